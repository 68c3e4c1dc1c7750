"""The emulated Snowflake and S3 the end-to-end benchmarks run against, each in its own process.

`emulated_services(scale)` starts the embedded Snowflake emulator holding TPC-H at `scale` and a
moto server with a bucket, and yields the environment a run needs to reach both (credentials as
for a real account, never the embedded default) and a scratch folder that is also DAGSTER_HOME.
`staged_emulator(scale, endpoint)` starts the emulator with the stage EXPORTS over a moto bucket
(for unloads and loads), and `worker_env` is the environment that reaches it on a given port.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from export_throughput import BUCKET, MOTO_PIDS, moto_server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_EMULATOR = """
import sys, time
from pathlib import Path
from data_migration.local import emulator
print(emulator.ensure_started(Path(sys.argv[1]), sys.argv[2]), flush=True)
while True:
    time.sleep(3600)
"""


EXPORT_STAGE = "EXPORTS"
_STAGED_EMULATOR = """
import sys, time, boto3
from pathlib import Path
from data_migration.local import emulator, stages
port = emulator.ensure_started(Path(sys.argv[1]), sys.argv[2])
client = boto3.client("s3", endpoint_url=sys.argv[3], region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x")
emulator.APP.stages[sys.argv[5]] = stages.s3_stage(sys.argv[5], sys.argv[4], client)
print(port, flush=True)
while True:
    time.sleep(3600)
"""


@contextlib.contextmanager
def staged_emulator(scale: str, endpoint: str) -> Iterator[int]:
    """The emulator (TPC-H at `scale`) in its own process, with the stage EXPORT_STAGE over the
    bucket at `endpoint`; yields its port."""
    server = subprocess.Popen(
        [sys.executable, "-c", _STAGED_EMULATOR, str(ROOT / ".local"), scale, endpoint, BUCKET, EXPORT_STAGE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield int(server.stdout.readline())  # type: ignore[union-attr]
    finally:
        server.terminate()
        server.wait(timeout=30)


def worker_env(port: int, endpoint: str, work: Path) -> dict[str, str]:
    """This process's environment less project settings, plus those of a production run against
    the emulator on `port` (TPC-H as SNOWFLAKE_SAMPLE_DATA.TPCH_SF1) and the bucket at `endpoint`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_"))}
    env.update(
        SNOWFLAKE_ACCOUNT="emulator", SNOWFLAKE_USER="bench", SNOWFLAKE_PASSWORD="any",
        SNOWFLAKE_HOST="127.0.0.1", SNOWFLAKE_PORT=str(port), SNOWFLAKE_PROTOCOL="http",
        SNOWFLAKE_DATABASE="SNOWFLAKE_SAMPLE_DATA", SNOWFLAKE_SCHEMA="TPCH_SF1",
        S3_BUCKET_NAME=BUCKET, AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1", DAGSTER_HOME=str(work),
    )  # fmt: skip
    return env


@contextlib.contextmanager
def emulated_services(scale: str) -> Iterator[tuple[dict[str, str], Path, dict[str, int]]]:
    """Yields (environment, scratch folder, process ids of the "snowflake" and "s3" servers)."""
    with tempfile.TemporaryDirectory() as work, moto_server() as endpoint:
        work_dir = Path(work)
        (work_dir / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        local = ROOT / ".local"  # TPC-H data is generated once and kept there
        emulator = subprocess.Popen(
            [sys.executable, "-c", _EMULATOR, str(local), scale], stdout=subprocess.PIPE, text=True
        )
        try:
            port = int(emulator.stdout.readline())  # type: ignore[union-attr]
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_"))
            }
            env.update(
                SNOWFLAKE_ACCOUNT="emulator", SNOWFLAKE_USER="bench", SNOWFLAKE_PASSWORD="any",
                SNOWFLAKE_HOST="127.0.0.1", SNOWFLAKE_PORT=str(port), SNOWFLAKE_PROTOCOL="http",
                SNOWFLAKE_DATABASE="SNOWFLAKE_SAMPLE_DATA", SNOWFLAKE_SCHEMA="TPCH_SF1",  # whatever the scale
                S3_BUCKET_NAME=BUCKET, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="x",
                AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1", DAGSTER_HOME=str(work_dir),
            )  # fmt: skip
            yield env, work_dir, {"snowflake": emulator.pid, "s3": MOTO_PIDS[endpoint]}
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)


def connect(env: dict[str, str]) -> Any:
    """A connector session to the emulator that `env` (from emulated_services) points at."""
    import snowflake.connector

    return snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"], user=env["SNOWFLAKE_USER"], password=env["SNOWFLAKE_PASSWORD"],
        host=env["SNOWFLAKE_HOST"], port=int(env["SNOWFLAKE_PORT"]), protocol=env["SNOWFLAKE_PROTOCOL"],
        database=env["SNOWFLAKE_DATABASE"], schema=env["SNOWFLAKE_SCHEMA"],
    )  # fmt: skip
