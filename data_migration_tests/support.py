"""What the tests share besides fixtures: constants, the recorder around the Snowflake emulator,
and small helpers. Fixtures live in conftest.py; tests import these from here."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import snowflake.connector
from dagster_aws.s3 import S3Resource

from data_migration.local import emulator
from data_migration.storage import S3ObjectStore

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

    def connect(self, database: str = emulator.DATABASE, schema: str = emulator.SCHEMA) -> Any:
        return snowflake.connector.connect(
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
