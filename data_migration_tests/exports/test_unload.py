"""Server-side unload (`method: unload`): the embedded emulator's COPY INTO <location> against
Snowflake's documented behaviour, the statement the project sends (parsed with sqlglot), the
list's and the settings' errors, and end to end against fakesnow's server and moto: the files
Snowflake wrote listed by the project's manifest, checks, load_input, TPC-H Q1 equal to a streamed
export's, zero rows, zoned timestamps, failures that leave the previous export readable, and no
row through the worker.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import duckdb
import fakesnow.server
import pyarrow.parquet as pq
import pytest
import snowflake.connector
import sqlglot
from sqlglot import exp

from data_migration.config import ConfigError, parse_exports
from data_migration.definitions import build_definitions
from data_migration.exports.checks import READABLE, ROW_COUNT
from data_migration.exports.unload import shaped_query, unload_sql
from data_migration.local import emulator
from data_migration.local.stages import folder_stage, s3_stage
from data_migration.resources import SettingsError, deployment_from_env
from data_migration.snowflake.queries import Column
from data_migration_tests.support import BUCKET, Snowflake, queries, write_config

STAGE = "EXPORTS"


# The emulator's COPY INTO <location>, as Snowflake documents it --------------------------------


@pytest.fixture
def stage_folder(fake_snowflake: Snowflake, tmp_path: Path) -> Iterator[Path]:
    """A stage named EXPORTS over a fresh folder, on the session's emulator."""
    root = tmp_path / "stage"
    root.mkdir()
    fake_snowflake.recorder.app.stages[STAGE] = folder_stage(STAGE, root)
    yield root
    fake_snowflake.recorder.app.stages.pop(STAGE, None)


def execute(fake: Snowflake, sql: str) -> Any:
    connection = fake.connect()
    cursor = connection.cursor()
    cursor.execute(sql)
    return cursor


def test_files_are_named_with_the_statements_query_id_and_cut_at_max_file_size(
    fake_snowflake: Snowflake, stage_folder: Path
):
    cursor = execute(
        fake_snowflake,
        "COPY INTO @EXPORTS/out/ FROM (SELECT * FROM LINEITEM) FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE "
        "MAX_FILE_SIZE = 1000000 DETAILED_OUTPUT = TRUE INCLUDE_QUERY_ID = TRUE",
    )
    assert [d.name for d in cursor.description] == ["FILE_NAME", "FILE_SIZE", "ROW_COUNT"]
    rows = cursor.fetchall()
    assert len(rows) > 1  # 60,175 rows do not fit in 1 MB
    for index, (name, size, count) in enumerate(rows):
        assert name == f"out/data_{cursor.sfqid}_0_0_{index}.snappy.parquet"
        path = stage_folder / name
        assert path.stat().st_size == size <= 1_000_000 * 1.05
        assert pq.read_metadata(path).num_rows == count
        assert pq.read_metadata(path).row_group(0).column(0).compression == "SNAPPY"
    assert sum(row[2] for row in rows) == 60_175
    assert pq.read_schema(stage_folder / rows[0][0]).names[:2] == ["L_ORDERKEY", "L_PARTKEY"]  # HEADER = TRUE


def test_no_rows_write_no_file_and_the_summary_and_header_options(fake_snowflake: Snowflake, stage_folder: Path):
    empty = execute(
        fake_snowflake,
        "COPY INTO @EXPORTS/none/ FROM (SELECT * FROM ORDERS WHERE 1 = 0) FILE_FORMAT = (TYPE = PARQUET) "
        "DETAILED_OUTPUT = TRUE",
    )
    assert empty.fetchall() == [] and not (stage_folder / "none").exists()
    summary = execute(
        fake_snowflake,
        "COPY INTO @EXPORTS/plain/orders FROM (SELECT * FROM ORDERS) FILE_FORMAT = (TYPE = PARQUET COMPRESSION = NONE)",
    )
    assert [d.name for d in summary.description] == ["rows_unloaded", "input_bytes", "output_bytes"]
    ((rows, _, written),) = summary.fetchall()
    (path,) = (stage_folder / "plain").iterdir()
    assert rows == 15_000 and path.name == "orders_0_0_0.parquet" and path.stat().st_size == written
    assert pq.read_schema(path).names[0] == "_COL_0"  # without HEADER = TRUE


def test_zoned_timestamps_to_parquet_fail_as_in_snowflake_and_an_unknown_stage_too(
    fake_snowflake: Snowflake, stage_folder: Path
):
    with pytest.raises(snowflake.connector.ProgrammingError, match="TIMESTAMP_TZ or TIMESTAMP_LTZ .* not supported"):
        execute(
            fake_snowflake,
            "COPY INTO @EXPORTS/tz/ FROM (SELECT CAST('2024-01-01T00:00:00+02:00' AS TIMESTAMP_TZ) AS T) "
            "FILE_FORMAT = (TYPE = PARQUET)",
        )
    assert not (stage_folder / "tz").exists()
    with pytest.raises(snowflake.connector.ProgrammingError, match="Stage 'NOPE' does not exist or not authorized"):
        execute(fake_snowflake, "COPY INTO @NOPE/x/ FROM (SELECT 1 AS A) FILE_FORMAT = (TYPE = PARQUET)")
    with pytest.raises(snowflake.connector.ProgrammingError, match=r"TYPE = PARQUET\) only, not CSV"):
        execute(fake_snowflake, "COPY INTO @EXPORTS/x/ FROM (SELECT 1 AS A) FILE_FORMAT = (TYPE = CSV)")


# The statement ------------------------------------------------------------------------------------


def test_the_statement_quotes_the_stage_and_location_and_shapes_zoned_timestamps():
    columns = [Column("ID", "NUMBER(38,0)"), Column('At "x"', "TIMESTAMP_TZ(9)"), Column("L", "TIMESTAMP_LTZ(9)")]
    sql = unload_sql(
        '"DB"."S"."EXPORTS"', "exports/it's here/data/gen", 'SELECT * FROM "T"', columns, 2_000_000, "snappy"
    )
    tree = sqlglot.parse_one(sql, read="snowflake")
    assert isinstance(tree, exp.Copy)
    assert tree.this.this.this == '@"DB"."S"."EXPORTS"/exports/it\'s here/data/gen/'
    params = {p.this.name: p for p in tree.args["params"]}
    assert set(params) == {"FILE_FORMAT", "HEADER", "MAX_FILE_SIZE", "DETAILED_OUTPUT", "INCLUDE_QUERY_ID"}
    assert params["MAX_FILE_SIZE"].expression.name == "2000000"
    assert shaped_query('SELECT * FROM "T"', columns) == (
        'SELECT "ID", CAST(CONVERT_TIMEZONE(\'UTC\', "At ""x""") AS TIMESTAMP_NTZ(9)) AS "At ""x""", '
        'CAST(CONVERT_TIMEZONE(\'UTC\', "L") AS TIMESTAMP_NTZ(9)) AS "L" FROM (SELECT * FROM "T")'
    )
    assert shaped_query("SELECT 1", [Column("A", "NUMBER(38,0)")]) == "SELECT 1"


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"file_type": "csv", "s3_path": "x/data.csv"}, "method: unload writes Parquet only"),
        ({"compression": "zstd"}, "compression: 'zstd' is not one Snowflake unloads Parquet with"),
        ({"max_rows_per_file": 10}, "max_rows_per_file: Snowflake's unload cuts files by size only"),
        ({"row_group_rows": 10}, "row_group_rows: Snowflake's unload cuts files by size only"),
        ({"incremental": {"cursor": "ID"}}, "method: unload does not combine with incremental yet"),
        ({"method": "copy"}, "method: 'copy' is not one of stream, unload"),
    ],
)
def test_every_unload_config_error_names_the_field(extra: dict[str, Any], expected: str):
    entry = {"table": "LINEITEM", "s3_path": "x/data.parquet", "method": "unload", **extra}
    with pytest.raises(ConfigError) as raised:
        parse_exports({"exports": [entry]}, "e.yaml")
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def test_the_stage_setting(tmp_path: Path):
    production = {"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u", "SNOWFLAKE_PASSWORD": "p", "S3_BUCKET_NAME": "bkt"}
    stage = deployment_from_env({**production, "SNOWFLAKE_EXPORT_STAGE": "db.exports.Stage"}).resources["snowflake"]
    assert stage.export_stage == '"DB"."EXPORTS"."STAGE"'
    with pytest.raises(SettingsError, match="SNOWFLAKE_EXPORT_STAGE='x; drop table t'"):
        deployment_from_env({**production, "SNOWFLAKE_EXPORT_STAGE": "x; drop table t"})
    config = write_config(tmp_path / "e.yaml", [{"table": "T", "s3_path": "t.parquet", "method": "unload"}])
    with pytest.raises(
        SettingsError, match=r"exports\[0\] \(T\) use method: unload, which needs SNOWFLAKE_EXPORT_STAGE"
    ):
        build_definitions(config, production)
    embedded = deployment_from_env({"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}).resources["snowflake"]
    assert embedded.export_stage == f'"{emulator.EXPORT_STAGE}"'  # works with no settings at all


# End to end: fakesnow's server -> moto -------------------------------------------------------------


@pytest.fixture
def unload_env(production_env: dict, fake_snowflake: Snowflake, moto_endpoint: str) -> Iterator[dict]:
    """Production settings plus SNOWFLAKE_EXPORT_STAGE, a stage the emulator writes to moto."""
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    fake_snowflake.recorder.app.stages[STAGE] = s3_stage(STAGE, BUCKET, client)
    yield {**production_env, "SNOWFLAKE_EXPORT_STAGE": STAGE}
    fake_snowflake.recorder.app.stages.pop(STAGE, None)


def run(defs: dg.Definitions, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("all_exports").execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def manifest(s3: Any, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_an_unload_and_a_stream_of_lineitem_give_the_same_q1_and_no_row_reaches_the_worker(
    unload_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from data_migration.snowflake import queries as source

    entries = [
        {"table": "LINEITEM", "s3_path": "exports/lineitem/data.parquet", "method": "unload", "max_file_size_mb": 1},
        {"table": "STREAMED", "query": "SELECT * FROM LINEITEM", "s3_path": "exports/streamed/data.parquet"},
    ]
    defs = build_definitions(write_config(tmp_path / "e.yaml", entries), unload_env)
    streams: list[str] = []
    original = source.open_export_stream
    monkeypatch.setattr(
        "data_migration.exports.assets.open_export_stream",
        lambda s, sql, **kw: streams.append(sql) or original(s, sql, **kw),
    )
    result = run(defs)
    assert result.success
    assert streams == ["SELECT * FROM LINEITEM"]  # only the streamed export fetched a result
    events = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    md = events["LINEITEM"]
    assert md["method"].value == "unload" and md["worker_data_bytes"].value == 0
    assert md["dagster/row_count"].value == md["snowflake_row_count"].value == 60_175
    assert md["dagster/uri"].value == f"s3://{BUCKET}/exports/lineitem/data/manifest.json"
    sent = [q for q in fake_snowflake.recorder.queries if q.startswith("COPY INTO")]
    assert (
        sent[-1].startswith('COPY INTO \'@"EXPORTS"/exports/lineitem/data/') and "MAX_FILE_SIZE = 1000000" in sent[-1]
    )
    committed = manifest(s3, "exports/lineitem/data/manifest.json")
    assert committed["method"] == "unload" and committed["row_count"] == 60_175 and len(committed["files"]) > 1
    assert all(
        f["path"].endswith(".snappy.parquet") and md["snowflake_query_id"].value in f["path"]
        for f in committed["files"]
    )
    checks = {
        c.check_name: c for c in result.get_asset_check_evaluations() if c.asset_key.to_user_string() == "LINEITEM"
    }
    assert checks[READABLE].passed and checks[ROW_COUNT].passed, {k: c.description for k, c in checks.items()}

    unloaded = []
    for index, entry in enumerate(committed["files"]):
        path = tmp_path / f"part-{index}.parquet"
        path.write_bytes(s3.get_object(Bucket=BUCKET, Key=f"exports/lineitem/data/{entry['path']}")["Body"].read())
        unloaded.append(str(path))
    streamed = tmp_path / "streamed.parquet"
    streamed.write_bytes(s3.get_object(Bucket=BUCKET, Key="exports/streamed/data.parquet")["Body"].read())
    # The emulator's dates are shifted so that the newest order is today (see test_tpch.py).
    source_db = fakesnow.server.shared_fs.duck_conn.cursor()
    (newest,) = source_db.execute(
        f"select max(O_ORDERDATE) from {emulator.DATABASE}.{emulator.SCHEMA}.ORDERS"
    ).fetchone()
    q1 = queries((newest - emulator.TPCH_LAST_ORDER_DATE).days)["Q1"]
    db = duckdb.connect()
    db.execute(f"create view lineitem as select * from read_parquet({unloaded})")
    from_unload = db.execute(q1).fetchall()
    db.execute(f"create or replace view lineitem as select * from read_parquet('{streamed}')")
    assert from_unload == db.execute(q1).fetchall() and len(from_unload) == 4
    assert sum(row[-1] for row in from_unload) > 50_000  # Q1's filter kept most rows: real work was compared


def test_zero_rows_commit_a_manifest_of_no_files_that_readers_read_as_empty(unload_env: dict, s3: Any, tmp_path: Path):
    entry = {
        "table": "NOTHING",
        "query": "SELECT * FROM ORDERS WHERE 1 = 0",
        "s3_path": "e/n.parquet",
        "method": "unload",
    }
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), unload_env)
    result = run(defs)
    assert result.success
    committed = manifest(s3, "e/n/manifest.json")
    assert committed["files"] == [] and committed["row_count"] == 0
    assert all(c.passed for c in result.get_asset_check_evaluations())
    seen: list[Any] = []

    @dg.asset(ins={"nothing": dg.AssetIn(dg.AssetKey("NOTHING"))})
    def downstream(nothing: Any) -> None:
        seen.append(nothing)

    merged = dg.Definitions.merge(defs, dg.Definitions(assets=[downstream]))
    job = merged.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(asset_selection=[dg.AssetKey("downstream")]).success
    assert len(seen[0]) == 0 and "O_ORDERKEY" in seen[0].columns


def test_zoned_timestamps_are_unloaded_as_utc_instants(unload_env: dict, s3: Any, tmp_path: Path):
    query = "SELECT 1 AS ID, CAST('2024-01-01T01:00:00+02:00' AS TIMESTAMP_TZ) AS AT"
    entry = {"table": "ZONED", "query": query, "s3_path": "z/data.parquet", "method": "unload"}
    result = run(build_definitions(write_config(tmp_path / "e.yaml", [entry]), unload_env))
    assert result.success
    (part,) = manifest(s3, "z/data/manifest.json")["files"]
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=f"z/data/{part['path']}")["Body"].read()))
    assert str(table.column("AT")[0].as_py()) == "2023-12-31 23:00:00"  # the UTC wall clock


def test_a_failed_unload_leaves_the_previous_export_and_nothing_of_its_own(
    unload_env: dict, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    entry = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "method": "unload"}
    env = {**unload_env, "DATA_MIGRATION_MAX_RETRIES": "0"}
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), env)
    assert run(defs).success
    before = s3.get_object(Bucket=BUCKET, Key="exports/orders/data/manifest.json")["Body"].read()
    keys_before = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}

    def lost(store: Any, folder: str, output: Any) -> Any:  # Snowflake wrote the files, then the check failed
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr("data_migration.exports.io_managers.stored_parts", lost)
    failed = run(defs)
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert "unload to" in message and "removed the 1 file(s) it had written" in message
    assert s3.get_object(Bucket=BUCKET, Key="exports/orders/data/manifest.json")["Body"].read() == before
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]} == keys_before


def test_a_stage_that_is_not_over_the_buckets_root_fails_clearly(
    unload_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    fake_snowflake.recorder.app.stages[STAGE] = folder_stage(STAGE, tmp_path / "elsewhere")
    entry = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "method": "unload"}
    env = {**unload_env, "DATA_MIGRATION_MAX_RETRIES": "0"}
    failed = run(build_definitions(write_config(tmp_path / "e.yaml", [entry]), env))
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert "the export stage must be over the root of the bucket" in message
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_on_the_embedded_default_unload_needs_no_settings(tmp_path: Path, tpch_dir: Path):
    """`data-migration run` with no credentials: the emulator's own stage over the bucket folder."""
    import subprocess
    import sys

    from data_migration_tests.support import environment_without_settings, local_folder

    local = local_folder(tmp_path, tpch_dir)
    entry = {"table": "LINEITEM", "s3_path": "exports/lineitem/data.parquet", "method": "unload", "max_file_size_mb": 1}
    config = write_config(tmp_path / "e.yaml", [entry])
    done = subprocess.run(
        [str(Path(sys.executable).parent / "data-migration"), "run", "--config", str(config)],
        env=environment_without_settings(DATA_MIGRATION_LOCAL_DIR=str(local)),
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Checks: 3 of 3 passed." in done.stdout
    folder = local / "bucket" / "exports" / "lineitem" / "data"
    committed = json.loads((folder / "manifest.json").read_text())
    assert committed["method"] == "unload" and committed["row_count"] == 60_175 and len(committed["files"]) > 1
    total = duckdb.sql(f"select count(*) from read_parquet('{folder}/*/*.parquet')").fetchall()
    assert total == [(60_175,)]


@pytest.mark.parametrize(
    "output",
    [
        [],
        [{"ROWS_UNLOADED": 0, "INPUT_BYTES": 0, "OUTPUT_BYTES": 0}],
        [{"FILE_NAME": "", "FILE_SIZE": 0, "ROW_COUNT": 0}],
    ],
    ids=["no row", "the summary row", "a row naming no file"],
)
def test_a_zero_row_unloads_output_is_read_as_no_file_whatever_its_shape(output: list, tmp_path: Path):
    """https://docs.snowflake.com/en/sql-reference/sql/copy-into-location says an unload of no rows
    writes no file, not what the statement returns then; every shape is read as no file, by
    column name, and a row that counts rows without naming a file fails."""
    from data_migration.exports.unload import UnloadMismatch, stored_parts
    from data_migration.files.storage import LocalObjectStore

    store = LocalObjectStore(root=str(tmp_path))
    assert stored_parts(store, "exports/x/gen", output) == []
    with pytest.raises(UnloadMismatch, match="5 rows unloaded but no file"):
        stored_parts(store, "exports/x/gen", [{"ROWS_UNLOADED": 5, "INPUT_BYTES": 10, "OUTPUT_BYTES": 10}])
