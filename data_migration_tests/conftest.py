"""Emulators on 127.0.0.1, started once per session, and the environment that points at them.

- Snowflake: fakesnow's HTTP server, spoken to by the real snowflake-connector-python. It is
  wrapped by `SqlRecorder`, which records the SQL text of every query request, because fakesnow
  resolves quoted identifiers case-insensitively and runs several statements in one call: tests
  assert on the SQL the project sends, not only on the emulator's answer.
- S3: moto's threaded server, spoken to by real boto3; and one in a child process
  (`moto_process`) for pyiceberg and deltalake, which hold the GIL through S3 calls.
- TPC-H data at SF0.01 from tpchgen-cli, loaded into the emulator as SNOWFLAKE_SAMPLE_DATA.TPCH_SF1.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import uvicorn
from moto.server import ThreadedMotoServer

from data_migration.local import emulator
from data_migration.local.server import EmulatorApp
from data_migration.local.stages import s3_stage
from data_migration_tests.faultproxy import FaultProxy
from data_migration_tests.support import (
    AWS_SECRET_CANARY,
    BUCKET,
    LOAD_DB,
    SNOWFLAKE_PASSWORD_CANARY,
    Snowflake,
    SqlRecorder,
    free_port,
)


def pytest_configure(config: pytest.Config) -> None:
    # A shell may export DAGSTER_MODULE_NAME (the activated one does not; see ./quickstart); every
    # test names its own target.
    os.environ.pop("DAGSTER_MODULE_NAME", None)


@pytest.fixture(scope="session")
def tpch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emulator.ensure_tpch(tmp_path_factory.mktemp("tpch"), "0.01")


@pytest.fixture(scope="session")
def fake_snowflake(tpch_dir: Path) -> Iterator[Snowflake]:
    recorder = SqlRecorder(EmulatorApp())  # the embedded emulator's app, as the embedded default serves it
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(recorder, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fakesnow server did not start"
        time.sleep(0.02)
    emulator.seed_tpch(tpch_dir, today=dt.date.today())
    yield Snowflake("127.0.0.1", port, recorder)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


# moto's server in a child process, for pyiceberg and deltalake (tables/conftest.py says why).
_SERVER = (
    "import sys, time\n"
    "from moto.server import ThreadedMotoServer\n"
    "server = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False)\n"
    "server.start()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"  # until the test session closes the pipe
    "server.stop()\n"
)


@pytest.fixture(scope="session")
def moto_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready", "moto did not start"
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=2)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "moto does not answer"
            time.sleep(0.05)
    yield endpoint
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def s3(moto_endpoint: str) -> Iterator[Any]:
    """A boto3 client on a fresh moto with the test bucket created."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    yield client


@pytest.fixture
def production_env(
    fake_snowflake: Snowflake, moto_endpoint: str, s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """Environment for the production deployment, pointed at the emulators; also set in os.environ."""
    for name in list(os.environ):
        if name.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_")) or name == "S3_BUCKET_NAME":
            monkeypatch.delenv(name)
    env = {
        "SNOWFLAKE_ACCOUNT": "fakesnow",
        "SNOWFLAKE_USER": "svc_exporter",
        "SNOWFLAKE_PASSWORD": SNOWFLAKE_PASSWORD_CANARY,
        "SNOWFLAKE_DATABASE": emulator.DATABASE,
        "SNOWFLAKE_SCHEMA": emulator.SCHEMA,
        "SNOWFLAKE_HOST": fake_snowflake.host,
        "SNOWFLAKE_PORT": str(fake_snowflake.port),
        "SNOWFLAKE_PROTOCOL": "http",
        "SNOWFLAKE_LOGIN_TIMEOUT": "10",
        "SNOWFLAKE_NETWORK_TIMEOUT": "10",
        "SNOWFLAKE_QUERY_TIMEOUT": "60",
        "S3_BUCKET_NAME": BUCKET,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_CANARY,
        "AWS_REGION": "us-east-1",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(autouse=True)
def s3_checks_sent_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto do what S3 does with a checksum sent in a request's header: compute it over the
    body received and refuse the request on a mismatch (moto stores the value unchecked; see its
    own TODO in S3Response._get_checksum), on a PutObject or UploadPart and on the FULL_OBJECT CRC32
    of a CompleteMultipartUpload. moto runs in this process, so the patch reaches it.
    On for every test, so that every upload in the suite is checked as S3 would check it."""
    import base64
    import zlib

    from moto.s3.exceptions import S3ClientError
    from moto.s3.responses import S3Response

    original = S3Response._get_checksum

    def checked(self: S3Response, response_headers: dict[str, Any]) -> tuple[str, str | None]:
        algorithm = self.headers.get("x-amz-sdk-checksum-algorithm", "")
        sent = self.headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if algorithm.upper() == "CRC32" and sent and isinstance(self.body, bytes):
            actual = base64.b64encode(zlib.crc32(self.body).to_bytes(4, "big")).decode()
            if actual != sent:
                raise S3ClientError("BadDigest", "The CRC32 you specified did not match the calculated checksum.")
        return original(self, response_headers)

    monkeypatch.setattr(S3Response, "_get_checksum", checked)

    original_post = S3Response._key_response_post

    def checked_complete(
        self: S3Response, request: Any, body: bytes, bucket_name: str, query: dict, key_name: str
    ) -> Any:
        # CompleteMultipartUpload with a FULL_OBJECT CRC32: S3 checks it against the parts.
        upload_id = (query.get("uploadId") or [None])[0]
        sent = self.headers.get("x-amz-checksum-crc32")
        if upload_id and sent and (self.headers.get("x-amz-checksum-type") or "").upper() == "FULL_OBJECT":
            multipart = self.backend.get_bucket(bucket_name).multiparts.get(upload_id)
            if multipart is not None:
                crc = 0
                for number in sorted(multipart.parts):
                    crc = zlib.crc32(multipart.parts[number].value, crc)
                if base64.b64encode(crc.to_bytes(4, "big")).decode() != sent:
                    raise S3ClientError("BadDigest", "The CRC32 you specified did not match the calculated checksum.")
        return original_post(self, request, body, bucket_name, query, key_name)

    monkeypatch.setattr(S3Response, "_key_response_post", checked_complete)


@pytest.fixture
def s3_proxy(moto_endpoint: str, s3: Any) -> Iterator[FaultProxy]:
    """A FaultProxy (faultproxy.py) in front of a fresh moto: point a store at `s3_proxy.url`."""
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy(host, int(port))
    yield proxy
    proxy.stop()


@pytest.fixture
def schema(fake_snowflake: Snowflake) -> str:
    """A fresh schema in LOAD_DB for a test's load targets (the emulator is shared by the session)."""
    name = f"S_{uuid.uuid4().hex[:8].upper()}"
    fake_snowflake.execute(f"CREATE DATABASE IF NOT EXISTS {LOAD_DB}")
    fake_snowflake.execute(f"CREATE SCHEMA IF NOT EXISTS {LOAD_DB}.{name}")
    return name


@pytest.fixture
def stage_env(production_env: dict, fake_snowflake: Snowflake, moto_endpoint: str) -> Iterator[dict]:
    """Production settings plus SNOWFLAKE_EXPORT_STAGE over the bucket (moto), with a load role."""
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    fake_snowflake.recorder.app.stages["EXPORTS"] = s3_stage("EXPORTS", BUCKET, client)
    yield {**production_env, "SNOWFLAKE_EXPORT_STAGE": "EXPORTS", "SNOWFLAKE_LOAD_ROLE": "LOADER"}
    fake_snowflake.recorder.app.stages.pop("EXPORTS", None)
