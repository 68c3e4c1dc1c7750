"""Exports to Apache Iceberg and Delta Lake tables (exports/tables.py), end to end: the list, the
run on the embedded default and in production settings against moto (its server in a child
process: pyiceberg's and delta-rs's S3 clients hold the GIL), the tables read back by DuckDB
1.5.5's own Iceberg and Delta readers (data_migration_tests/readers, a venv of their own) and
compared cell by cell with the source, reruns and time travel, a failure before the commit and
the sweep of its files, and every refusal of the list."""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pytest
import requests

from data_migration.config import ConfigError, load_exports
from data_migration.definitions import build_definitions
from data_migration.exports import tables
from data_migration.exports.table_formats import UNKNOWN_RUN_GRACE, leave_alone
from data_migration.tables import delta, iceberg
from data_migration.tables.commit import TableCommitError
from data_migration.tables.naming import DataFileName, parse_data_file
from data_migration_tests.readers import ensure_reader_venv, query, read_delta, read_iceberg
from data_migration_tests.support import (
    AWS_SECRET_CANARY,
    BUCKET,
    COLUMNS,
    PROJECT_ROOT,
    ROWS,
    Snowflake,
    local_folder,
    metadata,
    run,
    write_config,
)

TYPES_QUERY = 'select * from TYPEDB.PUBLIC.TYPES order by "Id"'
# Delta has no TIME type and takes no space in a column name: the type table less "t", renamed.
DELTA_TYPES_QUERY = (
    'select "Id", "num", "f", "s", "b", "d", "ntz", "tz", "bin", "v", "o", "a", "select", '
    '"has space" as "has_space" from TYPEDB.PUBLIC.TYPES order by "Id"'
)
ORDERS_QUERY = "select * from ORDERS"
CHDB_SUMS = "count(*) AS n, sum(O_TOTALPRICE) AS total"
TABLES = [
    {"table": "ORDERS", "s3_path": "lake/orders", "file_type": "iceberg"},
    {"table": "ORDERS_DELTA", "s3_path": "lake/orders_delta", "file_type": "delta", "query": ORDERS_QUERY},
]
# DuckDB 1.5.5's own names for what it reads (the Arrow types are compared with the source's too).
# NUMBER(38,0) stays an exact decimal(38, 0), as in every export (the README's type table).
ORDERS_DUCKDB_TYPES = {
    "O_ORDERKEY": "DECIMAL(38,0)",
    "O_CUSTKEY": "DECIMAL(38,0)",
    "O_ORDERSTATUS": "VARCHAR",
    "O_TOTALPRICE": "DECIMAL(15,2)",
    "O_ORDERDATE": "DATE",
    "O_ORDERPRIORITY": "VARCHAR",
    "O_CLERK": "VARCHAR",
    "O_SHIPPRIORITY": "DECIMAL(38,0)",
    "O_COMMENT": "VARCHAR",
}

# The type table (support.COLUMNS): NUMBER(38,s) as decimals, TIMESTAMP_NTZ as a naive and
# TIMESTAMP_TZ as a UTC timestamp in microseconds, TIME as Iceberg's time, VARIANT/OBJECT/ARRAY as
# JSON text, BINARY as bytes.
TYPES_DUCKDB_TYPES = {
    "Id": "DECIMAL(38,0)",
    "num": "DECIMAL(38,9)",
    "f": "DOUBLE",
    "s": "VARCHAR",
    "b": "BOOLEAN",
    "d": "DATE",
    "t": "TIME",
    "ntz": "TIMESTAMP",
    "tz": "TIMESTAMP WITH TIME ZONE",
    "bin": "BLOB",
    "v": "VARCHAR",
    "o": "VARCHAR",
    "a": "VARCHAR",
    "select": "VARCHAR",
    "has space": "VARCHAR",
}
DELTA_TYPES_DUCKDB_TYPES = {
    **{name: kind for name, kind in TYPES_DUCKDB_TYPES.items() if name not in ("t", "has space")},
    "has_space": "VARCHAR",
}


@pytest.fixture(scope="module", autouse=True)
def readers() -> None:
    ensure_reader_venv()  # the one-off install, outside any test's own time


@pytest.fixture
def lake_env(
    production_env: dict[str, str], moto_process: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """Production settings with the bucket on moto's child-process server, and the SQLite
    catalog in the test's own local folder."""
    requests.post(f"{moto_process}/moto-api/reset", timeout=10)
    client = boto3.client(
        "s3", endpoint_url=moto_process, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    client.create_bucket(Bucket=BUCKET)
    env = {**production_env, "AWS_ENDPOINT_URL": moto_process, "DATA_MIGRATION_LOCAL_DIR": str(tmp_path / "local")}
    for name in ("AWS_ENDPOINT_URL", "DATA_MIGRATION_LOCAL_DIR"):
        monkeypatch.setenv(name, env[name])
    return env


@pytest.fixture
def lake_s3(lake_env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=lake_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


@pytest.fixture(scope="module")
def types_source(fake_snowflake: Snowflake) -> pa.Table:
    with fake_snowflake.connect("TYPEDB", "PUBLIC") as conn:
        cursor = conn.cursor()
        cursor.execute(f"create or replace table TYPES ({COLUMNS})")
        for row in ROWS:
            cursor.execute(f"insert into TYPES select {row}")
    return fake_snowflake.arrow(TYPES_QUERY, "TYPEDB", "PUBLIC")


def run_list(
    tmp_path: Path, env: dict[str, str], exports: list[dict[str, Any]], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    config = write_config(tmp_path / "tables.yaml", exports)
    return run(build_definitions(config, env), instance)


def succeeded(result: dg.ExecuteInProcessResult) -> dg.ExecuteInProcessResult:
    failures = [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
    assert result.success, failures
    checks = [(e.check_name, e.passed, e.description) for e in result.get_asset_check_evaluations()]
    assert checks and all(passed for _, passed, _ in checks), checks
    return result


def data_keys(s3: Any, prefix: str) -> set[str]:
    """The data files under the table's data/ folder (Arrow's S3 filesystem may leave a zero-byte
    `data/` folder marker there too, which is no file of any table)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/data/")
    keys = {f"s3://{BUCKET}/{o['Key']}" for page in pages for o in page.get("Contents", [])}
    assert all(parse_data_file(key) is not None or key.endswith("/") for key in keys), keys
    return {key for key in keys if not key.endswith("/")}


def same_cell(got: Any, want: Any) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, dt.datetime) and want.tzinfo is not None:
        return isinstance(got, dt.datetime) and got.tzinfo is not None and got == want  # the same instant
    return got == want  # the types are asserted by the reader's own type names


def assert_cell_by_cell(got: pa.Table, want: pa.Table) -> None:
    assert got.column_names == want.column_names
    assert got.num_rows == want.num_rows
    for row, (read, source) in enumerate(zip(got.to_pylist(), want.to_pylist(), strict=True)):
        for column, value in source.items():
            assert same_cell(read[column], value), (row, column, read[column], value)


def orders_source(fake_snowflake: Snowflake) -> pa.Table:
    return fake_snowflake.arrow("select * from ORDERS order by O_ORDERKEY")


# --- the embedded default --------------------------------------------------------------------


def test_embedded_default_writes_an_iceberg_and_a_delta_table_duckdb_reads(
    tmp_path: Path, tpch_dir: Path, fake_snowflake: Snowflake
):
    local = local_folder(tmp_path, tpch_dir)
    env = {"DATA_MIGRATION_LOCAL_DIR": str(local)}
    result = succeeded(run_list(tmp_path, env, TABLES, dg.DagsterInstance.ephemeral()))
    iceberg_meta, delta_meta = metadata(result, "ORDERS"), metadata(result, "ORDERS_DELTA")
    folder = (local / "bucket" / "lake").resolve()
    assert iceberg_meta["dagster/uri"] == (folder / "orders").as_uri()
    assert iceberg_meta["metadata_location"].startswith(f"{(folder / 'orders').as_uri()}/metadata/00001-")
    assert (local / "iceberg" / "iceberg-catalog.db").is_file()  # the SQLite catalog, in the local folder
    assert delta_meta["table_version"] == 1  # version 0 created the table, 1 is the export
    assert iceberg_meta["dagster/row_count"] == delta_meta["dagster/row_count"] == 15000
    source = orders_source(fake_snowflake)
    for read in (
        query(f"select * from iceberg_scan('{iceberg_meta['metadata_location']}') order by O_ORDERKEY"),
        query(f"select * from delta_scan('{delta_meta['dagster/uri']}') order by O_ORDERKEY"),
    ):
        assert read.types == ORDERS_DUCKDB_TYPES
        assert_cell_by_cell(read.table, source)


def test_a_large_result_rolls_into_several_data_files_committed_at_once(
    tmp_path: Path, tpch_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every ROLL_ROWS rows a new file (here 4,000 instead of 1,000,000): one commit holds them all."""
    monkeypatch.setattr(tables, "ROLL_ROWS", 4000)
    env = {"DATA_MIGRATION_LOCAL_DIR": str(local_folder(tmp_path, tpch_dir))}
    result = succeeded(run_list(tmp_path, env, TABLES, dg.DagsterInstance.ephemeral()))
    for key in ("ORDERS", "ORDERS_DELTA"):
        found = metadata(result, key)
        assert found["files_added"] == len(found["data_files"]) >= 4, found["data_files"]
        assert [parse_data_file(uri).number for uri in found["data_files"]] == list(range(found["files_added"]))
        assert found["rows_added"] == found["dagster/row_count"] == 15000
    assert metadata(result, "ORDERS_DELTA")["table_version"] == 1  # one commit, whatever the file count
    location = metadata(result, "ORDERS")["metadata_location"]
    assert query(f"select count(*) AS n from iceberg_snapshots('{location}')").rows() == [{"n": 1}]
    assert query(f"select count(*) AS n from iceberg_scan('{location}')").rows() == [{"n": 15000}]


def test_other_columns_than_the_tables_are_refused_before_any_file_is_written(tmp_path: Path, tpch_dir: Path):
    """Schema evolution is not built: a query whose columns differ from the table's fails before a
    data file is written (Iceberg would otherwise take files lacking columns, read as NULLs)."""
    local = local_folder(tmp_path, tpch_dir)
    env, instance = {"DATA_MIGRATION_LOCAL_DIR": str(local)}, dg.DagsterInstance.ephemeral()
    first = succeeded(run_list(tmp_path, env, TABLES, instance))
    narrower = [{**entry, "query": "select O_ORDERKEY, O_COMMENT, 1.5::float as X from ORDERS"} for entry in TABLES]
    result = run_list(tmp_path, env, narrower, instance)
    assert not result.success
    messages = [str(e.event_specific_data.error.message) for e in result.get_step_failure_events()]
    assert len(messages) == 2 and all("and the query's differ (new: X; gone: O_CUSTKEY," in m for m in messages)
    lake = local / "bucket" / "lake"
    for key, folder in (("ORDERS", "orders"), ("ORDERS_DELTA", "orders_delta")):
        written = {(lake / folder / "data" / name).as_uri() for name in os.listdir(lake / folder / "data")}
        assert written == set(metadata(first, key)["data_files"])  # nothing more was written


def test_an_empty_result_is_a_table_of_no_rows_with_its_columns(tmp_path: Path, tpch_dir: Path):
    env = {"DATA_MIGRATION_LOCAL_DIR": str(local_folder(tmp_path, tpch_dir))}
    empty = [{**entry, "query": "select * from ORDERS where 1 = 0"} for entry in TABLES]
    result = succeeded(run_list(tmp_path, env, empty, dg.DagsterInstance.ephemeral()))
    iceberg_meta, delta_meta = metadata(result, "ORDERS"), metadata(result, "ORDERS_DELTA")
    assert iceberg_meta["dagster/row_count"] == delta_meta["dagster/row_count"] == 0
    assert iceberg_meta["data_files"] == delta_meta["data_files"] == []
    for read in (
        query(f"select * from iceberg_scan('{iceberg_meta['metadata_location']}')"),
        query(f"select * from delta_scan('{delta_meta['dagster/uri']}')"),
    ):
        assert read.table.num_rows == 0 and read.types == ORDERS_DUCKDB_TYPES


# --- production settings, moto ---------------------------------------------------------------


def test_production_tables_on_moto_read_by_duckdb_cell_by_cell(
    lake_env: dict[str, str], tmp_path: Path, fake_snowflake: Snowflake, types_source: pa.Table
):
    exports = [
        *TABLES,
        {"table": "TYPES", "s3_path": "lake/types", "file_type": "iceberg", "query": TYPES_QUERY,
         "iceberg": {"namespace": "sales", "table": "type_table"}},
        {"table": "TYPES_DELTA", "s3_path": "lake/types_delta", "file_type": "delta", "query": DELTA_TYPES_QUERY},
    ]  # fmt: skip
    result = succeeded(run_list(tmp_path, lake_env, exports, dg.DagsterInstance.ephemeral()))
    endpoint = lake_env["AWS_ENDPOINT_URL"]
    orders, types = metadata(result, "ORDERS"), metadata(result, "TYPES")
    assert orders["dagster/uri"] == f"s3://{BUCKET}/lake/orders"
    assert orders["iceberg_table"] == "data_migration.orders" and types["iceberg_table"] == "sales.type_table"
    relative = orders["metadata_location"].removeprefix(f"s3://{BUCKET}/")
    assert orders["snowflake_refresh_sql"] == f"ALTER ICEBERG TABLE \"ORDERS\" REFRESH '{relative}'"
    assert (orders["files_added"], orders["rows_added"], orders["file_type"]) == (1, 15000, "iceberg")
    assert orders["bytes_added"] > 0 and orders["data_files"][0].startswith(f"s3://{BUCKET}/lake/orders/data/dm-")
    shown = repr([metadata(result, key) for key in ("ORDERS", "ORDERS_DELTA", "TYPES", "TYPES_DELTA")])
    logged = repr([event.message for event in result.all_events])
    assert AWS_SECRET_CANARY not in shown + logged  # the S3 secret reaches the libraries, not metadata or logs

    source = orders_source(fake_snowflake)
    for read in (
        read_iceberg(orders["metadata_location"], endpoint, order_by="O_ORDERKEY"),
        read_delta(f"s3://{BUCKET}/lake/orders_delta", endpoint, order_by="O_ORDERKEY"),
    ):
        assert read.types == ORDERS_DUCKDB_TYPES
        assert_cell_by_cell(read.table, source)

    # A second reader, ClickHouse's own (chDB): the same rows and total.
    total = sum(source.column("O_TOTALPRICE").to_pylist())
    for read in (
        read_iceberg(orders["metadata_location"], endpoint, engine="chdb", columns=CHDB_SUMS),
        read_delta(f"s3://{BUCKET}/lake/orders_delta", endpoint, engine="chdb", columns=CHDB_SUMS),
    ):
        assert read.rows() == [{"n": 15000, "total": total}], read.rows()

    iceberg_types = read_iceberg(types["metadata_location"], endpoint, order_by='"Id"')
    assert iceberg_types.types == TYPES_DUCKDB_TYPES, iceberg_types.types
    assert_cell_by_cell(iceberg_types.table, types_source)
    delta_types = read_delta(f"s3://{BUCKET}/lake/types_delta", endpoint, order_by='"Id"')
    delta_source = fake_snowflake.arrow(DELTA_TYPES_QUERY, "TYPEDB", "PUBLIC")
    assert delta_types.types == DELTA_TYPES_DUCKDB_TYPES, delta_types.types
    assert_cell_by_cell(delta_types.table, delta_source)


def test_a_catalog_configured_the_pyiceberg_way_is_used_by_name(
    lake_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """DATA_MIGRATION_ICEBERG_CATALOG names a catalog that pyiceberg itself configures from
    PYICEBERG_CATALOG__<NAME>__* (a SQL catalog here; Glue or REST in production); the project
    adds the S3 properties the configuration leaves out. An unknown name fails the export."""
    database = tmp_path / "shared-catalog.db"
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__TYPE", "sql")
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__URI", f"sqlite:///{database}")
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__WAREHOUSE", f"s3://{BUCKET}/")
    env = {**lake_env, "DATA_MIGRATION_ICEBERG_CATALOG": "lake"}
    result = succeeded(run_list(tmp_path, env, TABLES[:1], dg.DagsterInstance.ephemeral()))
    found = metadata(result, "ORDERS")
    assert found["iceberg_catalog"] == "pyiceberg catalog 'lake'" and database.is_file()
    assert not (tmp_path / "local" / "iceberg").exists()  # the default SQLite catalog is not used
    with sqlite3.connect(database) as catalog:  # pyiceberg's SqlCatalog table, read as it is
        rows = catalog.execute(
            "select catalog_name, table_namespace, table_name, metadata_location from iceberg_tables"
        ).fetchall()
    assert rows == [("lake", "data_migration", "orders", found["metadata_location"])]

    unknown = run_list(tmp_path, {**lake_env, "DATA_MIGRATION_ICEBERG_CATALOG": "nowhere"}, TABLES[:1],
                       dg.DagsterInstance.ephemeral())  # fmt: skip
    assert not unknown.success
    assert "names a catalog pyiceberg has no configuration for" in repr(unknown.get_step_failure_events())


def test_a_rerun_adds_one_snapshot_with_the_same_rows_and_the_previous_stays_readable(
    lake_env: dict[str, str], tmp_path: Path
):
    instance = dg.DagsterInstance.ephemeral()
    endpoint = lake_env["AWS_ENDPOINT_URL"]
    first = succeeded(run_list(tmp_path, lake_env, TABLES, instance))
    second = succeeded(run_list(tmp_path, lake_env, TABLES, instance))
    before, after = metadata(first, "ORDERS"), metadata(second, "ORDERS")
    assert before["snapshot_id"] != after["snapshot_id"]
    snapshots = query(
        f"select snapshot_id, sequence_number from iceberg_snapshots('{after['metadata_location']}') "
        "order by sequence_number",
        endpoint,
    ).rows()
    assert [str(s["snapshot_id"]) for s in snapshots] == [before["snapshot_id"], after["snapshot_id"]]
    assert metadata(first, "ORDERS_DELTA")["table_version"] == 1
    assert metadata(second, "ORDERS_DELTA")["table_version"] == 2  # exactly one new version
    rows = "O_ORDERKEY, O_TOTALPRICE, O_COMMENT"
    now = read_iceberg(after["metadata_location"], endpoint, columns=rows, order_by="O_ORDERKEY").rows()
    then = read_iceberg(
        after["metadata_location"], endpoint, snapshot=int(before["snapshot_id"]), columns=rows, order_by="O_ORDERKEY"
    ).rows()
    assert now == then and len(now) == 15000
    table = f"s3://{BUCKET}/lake/orders_delta"
    assert read_delta(table, endpoint, version=1, columns=rows, order_by="O_ORDERKEY").rows() == now
    assert read_delta(table, endpoint, columns=rows, order_by="O_ORDERKEY").rows() == now
    # The rerun replaced the table's files: its commit reads only its own, the first run's stay for time travel.
    assert after["data_files"] != before["data_files"] and after["orphans_removed"] == 0


def test_a_failure_before_the_commit_leaves_the_table_and_the_next_run_removes_its_files(
    lake_env: dict[str, str], tmp_path: Path, lake_s3: Any, monkeypatch: pytest.MonkeyPatch
):
    instance = dg.DagsterInstance.ephemeral()
    endpoint = lake_env["AWS_ENDPOINT_URL"]
    first = succeeded(run_list(tmp_path, lake_env, TABLES, instance))
    kept = {key: set(metadata(first, key)["data_files"]) for key in ("ORDERS", "ORDERS_DELTA")}

    def no_commit(*args: Any, **kwargs: Any) -> Any:
        raise TableCommitError("killed between writing the data files and the commit")

    with monkeypatch.context() as patched:
        patched.setattr(iceberg, "commit", no_commit)
        patched.setattr(delta, "commit", no_commit)
        failed = run_list(tmp_path, lake_env, TABLES, instance)
    assert not failed.success
    orphans = {}
    for key, prefix in (("ORDERS", "lake/orders"), ("ORDERS_DELTA", "lake/orders_delta")):
        orphans[key] = data_keys(lake_s3, prefix) - kept[key]
        assert len(orphans[key]) == 1  # the failed run's file, which no commit lists
        (name,) = {parse_data_file(uri) for uri in orphans[key]}
        assert name is not None and name.run_id == failed.run_id
    # The table is as the first run left it.
    latest = read_iceberg(f"s3://{BUCKET}/lake/orders", endpoint, columns="count(*) AS n").rows()
    assert latest == [{"n": 15000}]
    metadata_files = lake_s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/orders/metadata/")["Contents"]
    assert sum(o["Key"].endswith(".metadata.json") for o in metadata_files) == 2  # created, first commit
    versions = lake_s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/orders_delta/_delta_log/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in versions) == [f"{n:020d}.json" for n in (0, 1)]

    third = succeeded(run_list(tmp_path, lake_env, TABLES, instance))
    for key, prefix in (("ORDERS", "lake/orders"), ("ORDERS_DELTA", "lake/orders_delta")):
        assert metadata(third, key)["orphans_removed"] == 1
        assert data_keys(lake_s3, prefix) == kept[key] | set(metadata(third, key)["data_files"])


def test_unsupported_types_are_refused_before_anything_is_written(
    lake_env: dict[str, str], tmp_path: Path, lake_s3: Any
):
    exports = [{"table": "TYPES_DELTA", "s3_path": "lake/bad", "file_type": "delta", "query": TYPES_QUERY}]
    result = run_list(tmp_path, lake_env, exports, dg.DagsterInstance.ephemeral())
    assert not result.success
    (message,) = [str(e.event_specific_data.error.message) for e in result.get_step_failure_events()]
    assert "cannot write 2 column(s) to a Delta table" in message
    assert "- t (time64[us]): Delta has no TIME type" in message
    assert "- has space (string): Delta column names cannot hold spaces" in message
    assert "Contents" not in lake_s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/bad")


# --- the list ----------------------------------------------------------------------------------

ICEBERG_ONLY = "exports[0] (ORDERS).iceberg: applies to file_type iceberg only"
REFUSALS = [
    ({"max_rows_per_file": 1000}, "exports[0] (ORDERS).max_rows_per_file: an Iceberg table's data files are sized"),
    ({"max_file_size_mb": 64}, "exports[0] (ORDERS).max_file_size_mb: an Iceberg table's data files are sized"),
    ({"compression": "lz4"}, "exports[0] (ORDERS).compression: 'lz4' is not one of"),
    ({"s3_path": "lake/orders.csv.gz"}, "exports[0] (ORDERS).s3_path: 'lake/orders.csv.gz' is an Iceberg table's"),
    ({"s3_path": "lake/orders.parquet"}, "drop the '.parquet' extension"),
    ({"csv_escape_formulas": True}, "exports[0] (ORDERS).csv_escape_formulas: applies to file_type csv only"),
    ({"json_decimals": "number"}, "exports[0] (ORDERS).json_decimals: applies to file_type json only"),
    ({"method": "unload"}, "exports[0] (ORDERS).method: unload: not yet for file_type iceberg/delta"),
    ({"timestamp_unit": "ns"}, "exports[0] (ORDERS).timestamp_unit: ns: Iceberg v2 and Delta tables"),
    ({"incremental": {"cursor": "O_ORDERDATE"}}, "exports[0] (ORDERS).incremental: not yet for file_type iceberg"),
    ({"skip_unchanged": True}, "exports[0] (ORDERS).skip_unchanged: not yet for file_type iceberg/delta"),
    (
        {"partition": {"column": "O_ORDERDATE", "granularity": "monthly", "start": "1992-01-01"}},
        "exports[0] (ORDERS).partition: not yet for file_type iceberg/delta",
    ),
    ({"s3_path": "lake/{partition}"}, "exports[0] (ORDERS).s3_path: 'lake/{partition}': an Iceberg table is one"),
    ({"verify": "full"}, "exports[0] (ORDERS).verify: full: not yet for file_type iceberg/delta"),
    ({"file_type": "delta", "iceberg": {"table": "x"}}, ICEBERG_ONLY),
    ({"file_type": "parquet", "s3_path": "o.parquet", "iceberg": {}}, ICEBERG_ONLY),
    ({"iceberg": {"namespace": "a b"}}, "exports[0] (ORDERS).iceberg.namespace: 'a b' must be letters"),
    ({"iceberg": {"table": "9x"}}, "exports[0] (ORDERS).iceberg.table: '9x' must be letters"),
    ({"iceberg": {"tabel": "x"}}, "exports[0] (ORDERS).iceberg.tabel: unknown field (allowed: namespace, table)"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "problem"), REFUSALS, ids=[problem.split(": ")[0] for _, problem in REFUSALS])
def test_the_list_refuses_what_a_table_cannot_do_naming_file_entry_and_field(
    tmp_path: Path, fields: dict[str, Any], problem: str
):
    path = write_config(
        tmp_path / "e.yaml", [{"table": "ORDERS", "s3_path": "lake/orders", "file_type": "iceberg", **fields}]
    )
    with pytest.raises(ConfigError) as raised:
        load_exports(path)
    assert any(problem in line for line in str(raised.value).splitlines() if line.strip().startswith(str(path))), str(
        raised.value
    )


def test_two_tables_of_one_catalog_name_or_one_folder_are_refused(tmp_path: Path):
    path = write_config(
        tmp_path / "e.yaml",
        [
            {"table": "ORDERS", "s3_path": "lake/orders", "file_type": "iceberg"},
            {"table": "O2", "s3_path": "lake/o2", "file_type": "iceberg", "iceberg": {"table": "orders"}},
            {"table": "O3", "s3_path": "lake/orders/part.parquet"},
        ],
    )
    with pytest.raises(ConfigError) as raised:
        load_exports(path)
    problems = raised.value.problems
    assert "exports[1] (O2).iceberg: the catalog name data_migration.orders is exports[0] (ORDERS)'s too" in problems[0]
    assert any(p.startswith("exports[2] (O3).s3_path:") and "lies inside exports[0] (ORDERS)" in p for p in problems)


def test_the_cli_refuses_such_a_list_with_exit_code_2(tmp_path: Path):
    path = write_config(
        tmp_path / "e.yaml", [{"table": "ORDERS", "s3_path": "lake/orders", "file_type": "delta", "method": "unload"}]
    )
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "data-migration"), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATA_MIGRATION_LOCAL_DIR": str(tmp_path / "local")},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"{path}: exports[0] (ORDERS).method: unload: not yet for file_type iceberg/delta" in done.stdout + done.stderr
    )


def test_the_old_lists_keep_working(tmp_path: Path):
    config = load_exports(PROJECT_ROOT / "config" / "export_tables.yaml")
    assert {spec.file_type for spec in config.exports} <= {"parquet", "csv", "json"}
    assert all(not spec.is_table and spec.iceberg_name is None for spec in config.exports)


def test_the_sweep_leaves_running_and_unknown_recent_runs_alone():
    """Whose files the sweep may delete: a finished run's; never this run's, a run still going,
    or a run the instance does not know that started within the hour (it may still commit)."""
    instance = dg.DagsterInstance.ephemeral()
    finished = instance.add_run(dg.DagsterRun(job_name="j", run_id="finished-run", status=dg.DagsterRunStatus.FAILURE))
    going = instance.add_run(dg.DagsterRun(job_name="j", run_id="going-run", status=dg.DagsterRunStatus.STARTED))
    now = dt.datetime.now(dt.UTC)
    protect = leave_alone(instance, "this-run")
    assert protect(DataFileName(now, "this-run", 0))
    assert protect(DataFileName(now, going.run_id, 0))
    assert not protect(DataFileName(now, finished.run_id, 0))
    assert protect(DataFileName(now, "unknown-run", 0))
    assert not protect(DataFileName(now - UNKNOWN_RUN_GRACE - dt.timedelta(minutes=1), "unknown-run", 0))
