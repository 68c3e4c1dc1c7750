"""The statement catalogue: every statement shape the project sends to Snowflake for a sample list
(a stream, a split, a partitioned, an incremental and an unloaded export with their checks;
replace, append and merge loads through the external stage and through a temporary internal
stage), as the emulator received them, with run ids, random names, generations and checksums
replaced by placeholders. Each parses as one statement of sqlglot's Snowflake dialect, and the
set is kept in snapshots/statements.sql, so a change to any statement is a visible diff.

After an intended change, rewrite the snapshot and commit it with the change:
    UPDATE_SNAPSHOTS=1 ./quickstart test data_migration_tests/test_statement_catalogue.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import sqlglot
from sqlglot import exp

from data_migration.definitions import build_definitions
from data_migration.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from data_migration_tests.support import BUCKET, LOAD_DB, Snowflake, failure, parquet_bytes, run, write_config

SNAPSHOT = Path(__file__).parent / "snapshots" / "statements.sql"

EXPORTS = [
    {"table": "ORDERS", "s3_path": "cat/orders.parquet"},
    {"table": "CUSTOMER", "s3_path": "cat/customer/data.parquet", "max_rows_per_file": 600},
    {
        "table": "MONTHLY",
        "query": "SELECT * FROM ORDERS -- every order",
        "s3_path": "cat/monthly/month={partition}/data.parquet",
        "partition": {"column": "O_ORDERDATE", "granularity": "monthly", "start": "1990-01-01"},
    },
    {
        "table": "EVENTS",
        "query": "SELECT * FROM ORDERS",
        "s3_path": "cat/events.parquet",
        "incremental": {"cursor": "O_ORDERKEY"},
    },
    {
        "table": "LINES",
        "query": "SELECT * FROM LINEITEM WHERE L_ORDERKEY < 100",
        "s3_path": "cat/lines.parquet",
        "method": "unload",
    },
]


def loads(schema: str) -> list[dict[str, Any]]:
    return [
        {"table": f"{LOAD_DB}.{schema}.ORDERS_COPY", "from": "ORDERS", "mode": "replace"},
        {"table": f"{LOAD_DB}.{schema}.CUSTOMERS", "from": "CUSTOMER", "mode": "append"},
        {"table": f"{LOAD_DB}.{schema}.PEOPLE", "s3_path": "inbound/people.parquet", "mode": "merge", "keys": ["ID"]},
    ]


_PLACEHOLDERS = [
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "<UUID>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<SHA256>"),
    (re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}"), "<GENERATION>"),
    (re.compile(r"(__DM_(?:LANDING|NEW)_|DM_STAGE_)[0-9A-F]{12}"), r"\1<RUN>"),
    (re.compile(r"(DM_STAGE_<RUN>_)[0-9A-F]{8}"), r"\1<RANDOM>"),
    (re.compile(r"load_[0-9a-f]{8}"), "load_<RANDOM>"),
    (re.compile(r"data_[0-9a-f_-]{20,}_0_0_(\d+)"), r"data_<QUERY_ID>_0_0_\1"),
    (re.compile(r"\bS_[0-9A-F]{8}\b"), "<SCHEMA>"),
    (re.compile(r"'\d+:[0-9]+:"), "'<SIZE>:<CRC32>:"),
]


def normalized(sql: str) -> str:
    for pattern, placeholder in _PLACEHOLDERS:
        sql = pattern.sub(placeholder, sql)
    return sql


def test_every_statement_the_project_sends_parses_and_matches_the_catalogue(
    stage_env: dict, production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    people = pa.table({"ID": pa.array([1, 2], pa.int64()), "NAME": ["ann", "bob"]})
    s3.put_object(Bucket=BUCKET, Key="inbound/people.parquet", Body=parquet_bytes(people))
    config = write_config(tmp_path / "c.yaml", EXPORTS, loads(schema))
    first = len(fake_snowflake.recorder.queries)
    instance = dg.DagsterInstance.ephemeral()
    with_stage = build_definitions(config, stage_env)
    result = run(with_stage, instance)  # every unpartitioned export and load, the external stage
    assert result.success, failure(result)
    partition = with_stage.resolve_job_def("MONTHLY_partitions").execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={PARTITION_RANGE_START_TAG: "1995-03-01", PARTITION_RANGE_END_TAG: "1995-03-01"},
    )
    assert partition.success, failure(partition)
    # The same loads through a temporary internal stage (no SNOWFLAKE_EXPORT_STAGE, so no unload).
    internal = write_config(tmp_path / "i.yaml", EXPORTS[:2], loads(schema)[:2])
    loads_only = [dg.AssetKey([LOAD_DB, schema, name]).to_user_string() for name in ("ORDERS_COPY", "CUSTOMERS")]
    result = run(build_definitions(internal, production_env), instance, loads_only)
    assert result.success, failure(result)
    sent = fake_snowflake.recorder.queries[first:]

    catalogue = sorted({normalized(sql) for sql in sent})
    for sql in catalogue:
        statements = [s for s in sqlglot.parse(sql, read="snowflake") if s is not None]
        assert len(statements) == 1, sql
    shapes = {type(sqlglot.parse_one(sql, read="snowflake")).__name__ for sql in catalogue}
    assert {"Select", "Copy", "Create", "Merge", "Insert", "Drop"} <= shapes, shapes
    text = "".join(f"{sql};\n\n" for sql in catalogue)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), "no catalogue yet: run with UPDATE_SNAPSHOTS=1 and commit it"
    assert text == SNAPSHOT.read_text(), (
        "the statements changed; if that is intended, run UPDATE_SNAPSHOTS=1 ./quickstart test "
        "data_migration_tests/test_statement_catalogue.py and commit snapshots/statements.sql"
    )


def test_placeholders_replace_only_what_changes_from_run_to_run():
    sql = (
        'CREATE TRANSIENT TABLE "LOADDB"."S_0A1B2C3D"."T__DM_LANDING_0123456789AB" ("A" NUMBER(38,0)) '
        'COMMENT = \'{"app":"data-migration","run_id":"0f6c1e9a-0b6e-4c55-8a3e-1d2c3b4a5f60"}\''
    )
    assert normalized(sql) == (
        'CREATE TRANSIENT TABLE "LOADDB"."<SCHEMA>"."T__DM_LANDING_<RUN>" ("A" NUMBER(38,0)) '
        'COMMENT = \'{"app":"data-migration","run_id":"<UUID>"}\''
    )
    assert isinstance(sqlglot.parse_one(normalized(sql), read="snowflake"), exp.Create)
