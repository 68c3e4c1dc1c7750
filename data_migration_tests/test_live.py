"""The live profile: exports (every format, split, unload), a partition, increments, loads in every
mode and the type table's round trip, end to end, against whatever the settings point at.

    DATA_MIGRATION_LIVE=1 ./quickstart test -m live     # a real account and bucket

With DATA_MIGRATION_LIVE=1 the tests take the deployment's settings from the environment (or
`.env`; see the README's live profile for what they need) and work inside a scratch schema
`DM_LIVE_<random>` of SNOWFLAKE_DATABASE, which they create and drop, and under
`data-migration-live/<random>/` in the bucket, which they empty. They skip, naming what is
missing, when a setting is absent. Without DATA_MIGRATION_LIVE the same tests run on every test
run against the emulators with production settings, so the profile's own code is always tested.
Everything is read back through the connector and boto3, by column name.
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow.parquet as pq
import pytest

from data_migration.definitions import build_definitions
from data_migration.resources import deployment_from_env
from data_migration.schedules import ALL_EXPORTS_JOB, PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from data_migration.snowflake.queries import closing_connection
from data_migration_tests.support import COLUMNS, ROWS, write_config

pytestmark = pytest.mark.live

LIVE = bool(os.environ.get("DATA_MIGRATION_LIVE"))
REQUIRED = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_WAREHOUSE", "S3_BUCKET_NAME")


@dataclass
class Target:
    """Where the profile runs: the settings, the scratch schema and the bucket prefix."""

    env: dict[str, str]
    database: str
    schema: str
    prefix: str
    bucket: str
    s3: Any

    def name(self, table: str) -> str:
        return f'"{self.database}"."{self.schema}"."{table}"'

    def sql(self, text: str) -> list[dict[str, Any]]:
        """One statement with the load role's session; rows by column name."""
        with closing_connection(deployment_from_env(self.env).resources["snowflake_load"]) as conn:
            cursor = conn.cursor()
            cursor.execute(text)
            names = [str(meta.name).upper() for meta in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def keys(self, under: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{under}")
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))

    def run(self, exports: list[dict], loads: list[dict] | None = None, tmp: Path | None = None, **tags: str) -> Any:
        assert tmp is not None
        config = write_config(tmp / f"live-{uuid.uuid4().hex[:6]}.yaml", exports, loads)
        defs = build_definitions(config, self.env)
        job = defs.resolve_job_def(tags.pop("job", ALL_EXPORTS_JOB))
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, tags=tags)
        errors = [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
        assert result.success, errors
        return result


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    scratch = uuid.uuid4().hex[:8].upper()
    if LIVE:
        from dotenv import dotenv_values

        # As the CLI reads it: a .env in the working directory sets what the environment does not.
        found = dotenv_values(Path.cwd() / ".env")
        for name, value in found.items():
            if value is not None and name not in os.environ:
                os.environ[name] = value
        missing = [name for name in REQUIRED if not os.environ.get(name)]
        if missing:
            pytest.skip(f"DATA_MIGRATION_LIVE is set, but {', '.join(missing)} are not: the live profile needs them")
        env = {k: v for k, v in os.environ.items() if k.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_"))}
        env["S3_BUCKET_NAME"] = os.environ["S3_BUCKET_NAME"]
        s3 = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    else:
        env = dict(request.getfixturevalue("stage_env"))  # the emulators, with an export stage over moto
        s3 = request.getfixturevalue("s3")
    database = env["SNOWFLAKE_DATABASE"]
    found = Target(
        env, database, f"DM_LIVE_{scratch}", f"data-migration-live/{scratch.lower()}", env["S3_BUCKET_NAME"], s3
    )
    found.sql(f'CREATE SCHEMA "{database}"."{found.schema}"')
    try:
        yield found
    finally:
        found.sql(f'DROP SCHEMA IF EXISTS "{database}"."{found.schema}" CASCADE')
        keys = found.keys("")
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=found.bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})


def _types(target: Target) -> str:
    table = target.name("TYPES")
    target.sql(f"CREATE TABLE {table} ({COLUMNS})")
    for row in ROWS:
        target.sql(f"INSERT INTO {table} SELECT {row}")
    return table


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return (math.isnan(got) and math.isnan(want)) or got == want
    if isinstance(want, str) and isinstance(got, str) and want[:1] in ("[", "{"):
        return json.loads(got) == json.loads(want)  # semi-structured values, as text
    return got == want


def test_every_format_split_and_unload_then_a_replace_gives_back_the_type_table(target: Target, tmp_path: Path):
    table = _types(target)
    query = f'SELECT * FROM {table} ORDER BY "Id"'
    exports = [
        {"table": "TYPES", "query": query, "s3_path": f"{target.prefix}/types.parquet"},
        {"table": "TYPES_CSV", "query": query, "s3_path": f"{target.prefix}/types.csv", "file_type": "csv"},
        {"table": "TYPES_JSON", "query": query, "s3_path": f"{target.prefix}/types.jsonl", "file_type": "json"},
        {"table": "TYPES_SPLIT", "query": query, "s3_path": f"{target.prefix}/split.parquet", "max_rows_per_file": 2},
    ]
    if target.env.get("SNOWFLAKE_EXPORT_STAGE"):
        plain = f'SELECT "Id", "num", "s", "d", "ntz" FROM {table} ORDER BY "Id"'  # what unload keeps exactly
        exports.append({"table": "TYPES_UNLOAD", "query": plain, "s3_path": f"{target.prefix}/unload.parquet",
                        "method": "unload"})  # fmt: skip
    loads = [{"table": f"{target.database}.{target.schema}.TYPES_COPY", "from": "TYPES", "mode": "replace"}]
    target.run(exports, loads, tmp_path)

    assert target.keys("types.") == [f"{target.prefix}/types.{ext}" for ext in ("csv", "jsonl", "parquet")]
    split = json.loads(
        target.s3.get_object(Bucket=target.bucket, Key=f"{target.prefix}/split/manifest.json")["Body"].read()
    )
    assert split["row_count"] == 4 and len(split["files"]) == 2
    if target.env.get("SNOWFLAKE_EXPORT_STAGE"):
        manifest = f"{target.prefix}/unload/manifest.json"
        assert json.loads(target.s3.get_object(Bucket=target.bucket, Key=manifest)["Body"].read())["row_count"] == 4
    body = target.s3.get_object(Bucket=target.bucket, Key=f"{target.prefix}/types.parquet")["Body"].read()
    assert pq.read_metadata(io.BytesIO(body)).num_rows == 4
    original = target.sql(query)
    copied = target.sql(f'SELECT * FROM {target.name("TYPES_COPY")} ORDER BY "Id"')
    assert len(copied) == len(original) == 4
    for got, want in zip(copied, original, strict=True):
        for column, value in want.items():
            assert _same(got[column], value), (column, got[column], value)


def test_a_partition_and_two_increments(target: Target, tmp_path: Path):
    events = target.name("EVENTS")
    target.sql(f"CREATE TABLE {events} (ID NUMBER(38,0), EVENT_AT TIMESTAMP_NTZ(9), NOTE VARCHAR)")
    at = "TO_TIMESTAMP_NTZ('{}', 'YYYY-MM-DD HH24:MI:SS')".format
    target.sql(
        f"INSERT INTO {events} VALUES (1, {at('2024-01-05 10:00:00')}, 'a'), (2, {at('2024-01-31 23:59:59')}, ''), "
        f"(3, {at('2024-02-01 00:00:00')}, 'x')"
    )
    query = f"SELECT * FROM {events} -- every event"
    monthly = {"table": "MONTHLY", "query": query, "s3_path": f"{target.prefix}/monthly/{{partition}}.parquet",
               "partition": {"column": "EVENT_AT", "granularity": "monthly", "start": "2024-01-01"}}  # fmt: skip
    target.run([monthly], tmp=tmp_path, job="MONTHLY_partitions",
               **{PARTITION_RANGE_START_TAG: "2024-01-01", PARTITION_RANGE_END_TAG: "2024-01-01"})  # fmt: skip
    january = target.s3.get_object(Bucket=target.bucket, Key=f"{target.prefix}/monthly/2024-01-01.parquet")
    assert pq.read_table(io.BytesIO(january["Body"].read())).column("ID").to_pylist() == [1, 2]

    increments = {"table": "INCREMENTS", "query": query, "s3_path": f"{target.prefix}/increments.parquet",
                  "incremental": {"cursor": "ID"}}  # fmt: skip
    target.run([increments], tmp=tmp_path)
    target.sql(f"INSERT INTO {events} VALUES (4, {at('2024-02-02 00:00:00')}, 'd')")
    target.run([increments], tmp=tmp_path)
    manifest = target.s3.get_object(Bucket=target.bucket, Key=f"{target.prefix}/increments/manifest.json")
    committed = json.loads(manifest["Body"].read())
    assert committed["row_count"] == 4 and [f["rows"] for f in committed["files"]] == [3, 1]


def test_skip_unchanged_follows_the_change_token_of_a_mixed_case_table(target: Target, tmp_path: Path):
    """SYSTEM$LAST_CHANGE_COMMIT_TIME is sent each part double-quoted inside the string
    ('"DB"."SCHEMA"."Mixed Case"'), as Snowflake reads object names in a string: on a real account
    this confirms it. A split export keeps its tokens in its manifest, so the runs need no shared
    Dagster instance."""
    table = target.name("Mixed Case")
    target.sql(f"CREATE TABLE {table} (ID NUMBER(38,0))")
    target.sql(f"INSERT INTO {table} VALUES (1), (2)")
    entry = {"table": "MIXED", "query": f"SELECT * FROM {table}", "s3_path": f"{target.prefix}/mixed/data.parquet",
             "max_rows_per_file": 1000, "skip_unchanged": True}  # fmt: skip

    def materialized(result: Any) -> dict[str, Any]:
        (event,) = result.get_asset_materialization_events()
        return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}

    first = materialized(target.run([entry], tmp=tmp_path))
    assert first["unchanged"] is False and first["dagster/row_count"] == 2
    second = materialized(target.run([entry], tmp=tmp_path))
    assert second["unchanged"] is True and second["dagster/row_count"] == 2
    target.sql(f"INSERT INTO {table} VALUES (3)")
    third = materialized(target.run([entry], tmp=tmp_path))
    assert third["unchanged"] is False and third["dagster/row_count"] == 3


def test_loads_in_every_mode_keep_strings_exactly(target: Target, tmp_path: Path):
    people = target.name("PEOPLE")
    target.sql(f"CREATE TABLE {people} (ID NUMBER(38,0), NAME VARCHAR)")
    target.sql(f"INSERT INTO {people} VALUES (1, 'ann'), (2, ''), (3, '\\\\N'), (4, NULL)")
    exports = [{"table": "PEOPLE", "query": f"SELECT * FROM {people}", "s3_path": f"{target.prefix}/people.parquet"}]
    scratch = f"{target.database}.{target.schema}"
    loads = [
        {"table": f"{scratch}.P_REPLACE", "from": "PEOPLE", "mode": "replace"},
        {"table": f"{scratch}.P_APPEND", "from": "PEOPLE", "mode": "append"},
        {"table": f"{scratch}.P_MERGE", "from": "PEOPLE", "mode": "merge", "keys": ["ID"]},
    ]
    target.run(exports, loads, tmp_path)
    target.run(exports, loads, tmp_path)  # again: the same rows replaced, the same file skipped, all matched
    want = [(1, "ann"), (2, ""), (3, "\\N"), (4, None)]
    for name in ("P_REPLACE", "P_APPEND", "P_MERGE"):
        rows = target.sql(f"SELECT ID, NAME FROM {target.name(name)} ORDER BY ID")
        assert [(int(r["ID"]), r["NAME"]) for r in rows] == want, name
    views = f'"{target.database}".INFORMATION_SCHEMA.TABLES'
    helpers = target.sql(
        f"SELECT TABLE_NAME FROM {views} WHERE TABLE_SCHEMA = '{target.schema}' AND CONTAINS(TABLE_NAME, '__DM_')"
    )
    assert helpers == []
