"""What the tests share besides fixtures: constants, the recorder around the Snowflake emulator,
and small helpers. Fixtures live in conftest.py; tests import these from here."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import requests
import snowflake.connector
from dagster_aws.s3 import S3Resource

from data_migration.files.storage import S3ObjectStore
from data_migration.local import emulator
from data_migration.schedules import ALL_EXPORTS_JOB

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = PROJECT_ROOT / "config" / "export_tables.yaml"
BUCKET = "data-migration-test"
# Canary values: a test that finds one of these in output has found a leak.
SNOWFLAKE_PASSWORD_CANARY = "CANARY-sf-pw-3f9d2c71"
AWS_SECRET_CANARY = "CANARY-aws-secret-8b1e6a04"
WRONG_PASSWORD_USER = "USER_WITH_WRONG_PASSWORD"
# Variables that choose a deployment or a Dagster target; a test's subprocess starts without them.
_PROJECT_PREFIXES = ("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_")
# The database of the loads' test targets (a fresh schema per test: the `schema` fixture).
LOAD_DB = "LOADDB"


@dataclass
class SqlRecorder:
    """ASGI wrapper around fakesnow's app that records each query's SQL text."""

    app: Any
    queries: list[str] = field(default_factory=list)
    logins: int = 0
    login_parameters: list[dict] = field(default_factory=list)
    # Fault injection: answer 503 to every request of the first session whose query contains this
    # text (the connector retries within its network timeout, then gives up); later sessions pass.
    fail_first_session_for: str | None = None
    failing_session: bytes | None = None
    failures_sent: int = 0
    # SIGKILL the client process `kill_pid` when a statement matching the regular expression
    # `kill_at` arrives: before the statement runs ("before"), or after it ran and before the
    # client sees the answer ("after").
    kill_at: str | None = None
    kill_when: str = "before"
    kill_pid: int | None = None
    killed: str | None = None  # the statement the kill came with
    killed_session: str | None = None  # its session's token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.endswith(("/query-request", "/login-request")):
            await self.app(scope, receive, send)
            return
        messages = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        data = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
        if path.endswith("/login-request"):
            self.logins += 1
            if data["data"].get("LOGIN_NAME") == WRONG_PASSWORD_USER:
                # fakesnow accepts any password; answer as Snowflake does for a wrong one.
                body = json.dumps(
                    {
                        "code": "390100",
                        "message": "Incorrect username or password was specified.",
                        "success": False,
                        "data": None,
                    }
                )
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
            # What the client sent; the emulator app it wraps answers QUERY_TAG (local/server.py).
            self.login_parameters.append(dict(data["data"].get("SESSION_PARAMETERS", {})))
        else:
            self.queries.append(data["sqlText"])
            if self.kill_at and self.kill_pid and re.search(self.kill_at, data["sqlText"]):
                await self._kill(scope, messages, send, data["sqlText"])
                return
            if self.fail_first_session_for and self.fail_first_session_for in data["sqlText"]:
                token = dict(scope["headers"]).get(b"authorization", b"")
                self.failing_session = self.failing_session or token
                if token == self.failing_session:
                    self.failures_sent += 1
                    await send(
                        {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]}
                    )
                    await send({"type": "http.response.body", "body": b"Service Unavailable"})
                    return

        async def replay() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        await self.app(scope, replay, send)

    async def _kill(self, scope: dict, messages: list[dict], send: Any, sql: str) -> None:
        """The client dies with SIGKILL at this statement, as a process killed by the OS does."""
        import signal

        pid, self.kill_pid, self.killed = self.kill_pid, None, sql
        self.killed_session = dict(scope["headers"]).get(b"authorization", b"").decode()[17:-1]
        if self.kill_when == "after":  # the statement runs; its answer reaches no one

            async def replay() -> dict:
                return messages.pop(0) if messages else {"type": "http.disconnect"}

            async def discard(message: dict) -> None:
                pass

            await self.app(scope, replay, discard)
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"killed"})


@dataclass
class Snowflake:
    host: str
    port: int
    recorder: SqlRecorder

    def connect(self, database: str = emulator.DATABASE, schema: str = emulator.SCHEMA, **args: Any) -> Any:
        return snowflake.connector.connect(
            **args,
            user="test",
            password="test",
            account="fakesnow",
            host=self.host,
            port=self.port,
            protocol="http",
            database=database,
            schema=schema,
            network_timeout=30,
            session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        )

    def execute(self, sql: str, database: str = emulator.DATABASE, schema: str = emulator.SCHEMA) -> list[tuple]:
        with contextlib.closing(self.connect(database, schema)) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            return cursor.fetchall()

    def arrow(self, sql: str, database: str = emulator.DATABASE, schema: str = emulator.SCHEMA) -> pa.Table:
        """The result as one Arrow table, as the connector hands it over (NUMBER(p,s) as decimals).

        Snowflake types each result chunk's integers by the chunk's own range (int16 in one,
        int32 in the next), so the connector's `fetch_arrow_all()` cannot concatenate a result of
        several chunks; pyarrow's permissive promotion gives every column its widest chunk type.
        """
        with contextlib.closing(self.connect(database, schema, arrow_number_to_decimal=True)) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            tables = list(cursor.fetch_arrow_batches())  # a table a chunk
            return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, what: str, seconds: float = 120) -> None:
    """Wait for a Dagster webserver (dagster dev, dagster-webserver) at `url` to answer
    /server_info; fail with the end of its log if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} did not start in {seconds:g} s"
        try:
            if requests.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(path: Path, exports: list[dict[str, Any]], loads: list[dict[str, Any]] | None = None) -> Path:
    import yaml

    document: dict[str, Any] = {"exports": exports}
    if loads is not None:
        document["loads"] = loads
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def s3_store(endpoint: str, bucket: str = BUCKET) -> S3ObjectStore:
    """An S3 store on moto at `endpoint`, with S3's smallest part size (a 12 MiB object is 3 parts)."""
    return S3ObjectStore(
        s3=S3Resource(
            endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        ),
        bucket=bucket,
        part_size_mib=5,
    )


def local_folder(tmp_path: Path, tpch_dir: Path) -> Path:
    """An embedded-default folder (DATA_MIGRATION_LOCAL_DIR) reusing the session's TPC-H data."""
    local = tmp_path / "local"
    (local / "tpch").mkdir(parents=True)
    (local / "tpch" / "sf0.01").symlink_to(tpch_dir)
    return local


def environment_without_settings(**extra: str) -> dict[str, str]:
    """This process's environment less every project, AWS and Dagster setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROJECT_PREFIXES) and k != "S3_BUCKET_NAME"}
    return {**env, **extra}


# The type matrix: every Snowflake type and edge value (test_types.py, the loads' round trips).
COLUMNS = (
    '"Id" number(38,0), "num" number(38,9), "f" float, "s" varchar, "b" boolean, "d" date, "t" time, '
    '"ntz" timestamp_ntz, "tz" timestamp_tz, "bin" binary, "v" variant, "o" object, "a" array, '
    '"select" varchar, "has space" varchar'
)
ROWS = [
    "1, 12345678901234567890123456789.123456789, 1.5, 'emoji 🎉, \"quoted\", comma\nnewline עברית e\u0301', true, "
    "'0001-01-01', '23:59:59.123456', '2024-03-10 02:30:00.123456', '2024-03-10 02:30:00-08:00', "
    "to_binary('00FF', 'HEX'), parse_json('{\"k\": [1, 2.5, \"x\"]}'), object_construct('a', 1), "
    "array_construct(1, 'two'), 'reserved', 'space'",
    "2, -0.000000001, 'NaN'::float, '', false, '9999-12-31', '00:00:00', '1970-01-01 00:00:00', "
    "'2024-11-03 01:30:00+05:30', to_binary('', 'HEX'), null, null, null, '', ''",
    "3, null, 'inf'::float, null, null, null, null, '2000-01-01 00:00:00', '2000-01-01 00:00:00+00:00', "
    "null, parse_json('\"str\"'), null, null, null, null",
    "4, 0, '-inf'::float, '=HYPERLINK(\"x\")', true, '2024-02-29', '12:00:00', '2024-02-29 12:00:00', "
    "'2024-02-29 12:00:00+00:00', to_binary('61', 'HEX'), parse_json('12.50'), null, array_construct(), 'a', 'b'",
]


# Bad entries and hostile keys, each with the problem it must be reported as (test_config.py, test_hostile.py).
BAD_ENTRIES = [
    ("{table: ORDERS, s3_path: a/x.parquet, s3_pth: b}", "exports[0] (ORDERS).s3_pth: unknown field"),
    ("{table: ORDERS}", "exports[0] (ORDERS).s3_path: is required"),
    ("{s3_path: a/x.parquet}", "exports[0].table: is required"),
    (
        "{table: ORDERS, s3_path: a/x.parquet, file_type: xlsx}",
        "exports[0] (ORDERS).file_type: 'xlsx' is not one of parquet, csv, json",
    ),
    ("{table: ORDERS, s3_path: a/x.parquet, file_type: 'Parquet '}", "'Parquet ' is not one of parquet, csv, json"),
    ("{table: ORDERS, s3_path: a/x.parquet, file_type: ''}", "'' is not one of"),
    ("{table: ORDERS, s3_path: a/x.parquet, file_type: [csv]}", "exports[0] (ORDERS).file_type:"),
    ("{table: ORDERS, s3_path: 42}", "exports[0] (ORDERS).s3_path: input should be a valid string"),
    ("{table: 7, s3_path: a/x.parquet}", "exports[0].table: input should be a valid string"),
    ("{table: ORDERS, s3_path: exports/x.csv}", "ends in '.csv' but file_type is 'parquet'"),
    (
        "{table: ORDERS, s3_path: a/x.parquet, schedule: 'every day'}",
        "exports[0] (ORDERS).schedule: 'every day' is not a valid cron string",
    ),
    ("{table: 'orders; drop table t', s3_path: a/x.parquet}", "exports[0] (orders; drop table t).table: "),
    ("{table: 'orders\" ; drop table t --', s3_path: a/x.parquet}", ".table:"),
    ("{table: 'orders/*', s3_path: a/x.parquet}", ".table:"),
    ("{table: '`orders`', s3_path: a/x.parquet}", ".table:"),
    ("{table: '\"My Table\"', s3_path: a/x.parquet}", "cannot be a Dagster asset name"),
    ("{table: a.b.c.d, s3_path: a/x.parquet}", "more than three parts"),
    (
        "{table: ORDERS, s3_path: a/x.parquet, query: 'select 1; drop table t'}",
        "exports[0] (ORDERS).query: must be exactly one statement, found 2: SELECT, DROP",
    ),
    (
        "{table: ORDERS, s3_path: a/x.parquet, query: 'delete from t'}",
        "query: must be a SELECT (or WITH ... SELECT), not DELETE",
    ),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'create table x as select 1'}", "not CREATE"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'call proc()'}", "not COMMAND"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'alter session set query_tag = 1'}", "not ALTER"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'put file:///etc/passwd @stage'}", "not PUT"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'insert into t select 1'}", "not INSERT"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'select * into t2 from t'}", "SELECT ... INTO"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: '  '}", "query: is empty"),
    ("{table: ORDERS, s3_path: a/x.parquet, query: 'selec 1 frm'}", "query:"),
    (
        "{table: ORDERS, s3_path: a/x.parquet, incremental: {cursor: 'X) OR 1=1 --'}}",
        "incremental.cursor: 'X) OR 1=1 --' is not a Snowflake object name",
    ),
    (
        "{table: ORDERS, s3_path: a/x.parquet, incremental: {cursor: X, initial: \"2024-01-01') OR ('1'='1\"}}",
        "incremental.initial:",
    ),
    (
        "{table: ORDERS, s3_path: a/x.parquet, incremental: {cursor: X, lookback: '1 hour; drop table t'}}",
        "incremental.lookback:",
    ),
]


HOSTILE_S3_PATHS = [
    "../x.parquet",
    "a/../../b.parquet",
    "./a.parquet",
    "a/./b.parquet",
    "/abs/x.parquet",
    "s3://other-bucket/x.parquet",
    "https://example.com/x.parquet",
    "a\\b.parquet",
    "%2e%2e/x.parquet",
    "a/%2E%2E/x.parquet",
    "a/\x00.parquet",
    "a/\n.parquet",
    "a//b.parquet",
    "a/b/",
    "",
    " a.parquet",
    "a.parquet ",
    "\u2024\u2024/x.parquet",
    "x" * 1025,
    "é" * 600,
    "file:x.parquet",
    "C:x.parquet",
]


# TPC-H Q1 and Q3, their date literals shifted as the emulator's seeded dates are (test_tpch.py, test_unload.py).
Q1 = """
select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
       avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc,
       count(*) as count_order
from lineitem
where l_shipdate <= date '{d1998_12_01}' - interval '90' day
group by l_returnflag, l_linestatus
order by l_returnflag, l_linestatus
"""
Q3 = """
select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority
from customer, orders, lineitem
where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate < date '{d1995_03_15}' and l_shipdate > date '{d1995_03_15}'
group by l_orderkey, o_orderdate, o_shippriority
order by revenue desc, o_orderdate, l_orderkey
limit 10
"""


# DuckDB types for reading CSV and JSON Lines back: what the column schema metadata says.
def queries(shift: int) -> dict[str, str]:
    def moved(day: dt.date) -> str:
        return (day + dt.timedelta(days=shift)).isoformat()

    return {
        "Q1": Q1.format(d1998_12_01=moved(dt.date(1998, 12, 1))),
        "Q3": Q3.format(d1995_03_15=moved(dt.date(1995, 3, 15))),
    }


# Running a list's job and reading what it did (the loads' tests).
def run(defs: dg.Definitions, instance: dg.DagsterInstance, selection: list[str] | None = None) -> Any:
    job = defs.resolve_job_def(ALL_EXPORTS_JOB)
    keys = [dg.AssetKey.from_user_string(s) for s in selection] if selection else None
    return job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=keys)


def metadata(result: Any, key: str) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}


def failure(result: Any) -> str:
    return " | ".join(str(e.event_specific_data.error.message) for e in result.get_step_failure_events())


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def load_entry(schema: str, table: str, **fields: Any) -> dict[str, Any]:
    return {"table": f"{LOAD_DB}.{schema}.{table}", **fields}
