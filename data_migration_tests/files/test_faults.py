"""Faults injected for real: connections cut mid-transfer, bytes flipped in transit, bytes changed
between the writer and boto3. Every case checks what a reader could see afterwards.

The network faults go through FaultProxy (faultproxy.py), a TCP proxy between the project's real
clients and the emulators. moto does not check upload checksums (A2 of the reliability plan), so
integrity is checked here at the layer that can show it: the CRC32 S3 stores against the bytes
the writer produced, and the sha256 of every part against the manifest.

Each case records its outcome in FAULTS; test_fault_tally (last in the file) prints the totals.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from dagster_aws.s3 import S3Resource

from data_migration.errors import is_transient
from data_migration.files.formats import FORMATS
from data_migration.files.layout import Split, read_manifest, write_export
from data_migration.files.storage import S3ObjectStore, StorageError
from data_migration.files.storage.pipe import Pipe
from data_migration.resources import deployment_from_env
from data_migration.snowflake.queries import open_export_stream
from data_migration_tests.faultproxy import DOWN, UP, FaultProxy
from data_migration_tests.support import (
    AWS_SECRET_CANARY,
    BUCKET,
    SNOWFLAKE_PASSWORD_CANARY,
    Snowflake,
    environment_without_settings,
    write_config,
)

FAULTS: Counter[str] = Counter()
# Every faulted export must end (succeed or fail) within this many seconds: no hangs.
BUDGET_SECONDS = 60
MiB = 1024 * 1024
BIN = Path(sys.executable).parent
KEYS = {"parquet": "exports/f/data.parquet", "csv": "exports/f/data.csv", "json": "exports/f/data.jsonl"}


@pytest.fixture(scope="module")
def data() -> pa.Table:
    """About 9 MB of barely compressible rows: a multipart upload of 2-4 parts of 5 MiB."""
    rng = random.Random(7)
    rows = 110_000
    return pa.table(
        {
            "ID": pa.array(range(rows), pa.int64()),
            "TOKEN": pa.array([rng.randbytes(32).hex() for _ in range(rows)]),
            "AMOUNT": pa.array([rng.randint(-(10**6), 10**6) / 100 for _ in range(rows)]),
        }
    )


def store_at(endpoint: str, attempts: int = 2) -> S3ObjectStore:
    return S3ObjectStore(
        s3=S3Resource(
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            max_attempts=attempts,
        ),
        bucket=BUCKET,
        part_size_mib=5,
    )


def export(store: S3ObjectStore, file_type: str, table: pa.Table, split: Split | None = None) -> Any:
    return write_export(
        store, KEYS[file_type], FORMATS[file_type], table.schema, table.to_batches(max_chunksize=8192), split=split
    )


def snapshot(s3: Any) -> dict[str, str]:
    """Every object in the bucket with its sha256: what any reader could see."""
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {
        item["Key"]: hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()).hexdigest()
        for item in listing
    }


def open_uploads(s3: Any) -> int:
    return len(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def sha(s3: Any, key: str) -> str:
    return hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest()


# S3 cut mid-upload -----------------------------------------------------------------------------

CUT_CASES = [(file_type, seed) for file_type in ("parquet", "csv", "json") for seed in range(15)]


@pytest.mark.parametrize("file_type, seed", CUT_CASES)
def test_s3_outage_mid_upload_leaves_the_previous_object(
    s3: Any, s3_proxy: FaultProxy, moto_endpoint: str, data: pa.Table, file_type: str, seed: int
):
    key = KEYS[file_type]
    previous = data.slice(0, 1000)
    export(store_at(moto_endpoint), file_type, previous)
    before = snapshot(s3)
    size = len(_encoded(file_type, data))
    # Anywhere from the first request to the last part, headers and all.
    s3_proxy.cut(UP, random.Random(seed).randint(1, int(size * 0.95)), outage=True)

    started = time.monotonic()
    with pytest.raises(StorageError, match=f"s3://{BUCKET}/{key}"):
        export(store_at(s3_proxy.url), file_type, data)
    assert time.monotonic() - started < BUDGET_SECONDS
    assert s3_proxy.cuts == 1
    s3_proxy.heal()
    assert snapshot(s3) == before  # the previous object, byte for byte, and nothing else
    orphaned = open_uploads(s3)  # the abort could not reach S3 during the outage

    result = export(store_at(s3_proxy.url), file_type, data)  # the next run, network back
    assert open_uploads(s3) == 0
    assert result.stale_removed == orphaned
    assert sha(s3, key) == hashlib.sha256(_encoded(file_type, data)).hexdigest()
    FAULTS["s3 outage mid-upload"] += 1


@pytest.mark.parametrize("file_type, seed", [(t, s) for t in ("parquet", "csv", "json") for s in range(5)])
def test_s3_connection_reset_mid_upload_is_retried_or_fails_cleanly(
    s3: Any, s3_proxy: FaultProxy, moto_endpoint: str, data: pa.Table, file_type: str, seed: int
):
    """One reset, then the network works: boto3 retries the request that broke."""
    export(store_at(moto_endpoint), file_type, data.slice(0, 1000))
    before = snapshot(s3)
    size = len(_encoded(file_type, data))
    s3_proxy.cut(UP, random.Random(100 + seed).randint(1, int(size * 0.95)), outage=False)
    try:
        export(store_at(s3_proxy.url, attempts=3), file_type, data)
    except StorageError:
        # e.g. the reset hit CompleteMultipartUpload after S3 had done it: nothing half-done.
        assert snapshot(s3) == before or sha(s3, KEYS[file_type]) == _sha(file_type, data)
        FAULTS["s3 reset mid-upload: failed cleanly"] += 1
    else:
        assert sha(s3, KEYS[file_type]) == _sha(file_type, data)
        FAULTS["s3 reset mid-upload: retried, exact bytes"] += 1
    assert s3_proxy.cuts == 1


@pytest.mark.parametrize("seed", range(10))
def test_split_export_cut_mid_part_keeps_the_committed_manifest(
    s3: Any, s3_proxy: FaultProxy, moto_endpoint: str, data: pa.Table, seed: int
):
    split = Split(max_rows=30_000)
    export(store_at(moto_endpoint), "csv", data.slice(0, 50_000), split)
    before = snapshot(s3)
    s3_proxy.cut(UP, random.Random(200 + seed).randint(1, len(_encoded("csv", data)) - 1), outage=True)
    with pytest.raises(StorageError):
        export(store_at(s3_proxy.url), "csv", data, split)
    s3_proxy.heal()
    # The manifest and its parts are as they were. Parts this run finished may remain when the
    # outage also stopped their deletion; no manifest lists them, and the next run removes them.
    after = snapshot(s3)
    assert {k: v for k, v in after.items() if k in before} == before
    old = read_manifest(store_at(moto_endpoint), KEYS["csv"])
    assert old.rows == 50_000

    result = export(store_at(moto_endpoint), "csv", data, split)
    assert set(snapshot(s3)) == {"exports/f/data/manifest.json", *(p.key for p in result.files)}
    assert open_uploads(s3) == 0
    FAULTS["s3 outage mid split export"] += 1


# Bytes changed: in transit on GET, and between the writer and boto3 -----------------------------


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_byte_flipped_on_get_is_caught(
    s3: Any, s3_proxy: FaultProxy, moto_endpoint: str, data: pa.Table, file_type: str
):
    small = data.slice(0, 20_000)  # one PutObject, so one whole-object GET that botocore checks
    export(store_at(moto_endpoint), file_type, small)
    s3_proxy.corrupt_get(KEYS[file_type])
    from botocore.exceptions import FlexibleChecksumError

    with pytest.raises(FlexibleChecksumError):
        with store_at(s3_proxy.url).open_read(KEYS[file_type]) as source:
            source.read()
    assert s3_proxy.flips == 1
    with store_at(s3_proxy.url).open_read(KEYS[file_type]) as source:  # the object itself is fine
        assert hashlib.sha256(source.read()).hexdigest() == _sha(file_type, small)
    FAULTS["byte flipped on GET"] += 1


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_manifest_flipped_on_get_fails_the_export_before_writing(
    s3: Any, s3_proxy: FaultProxy, moto_endpoint: str, data: pa.Table, file_type: str
):
    split = Split(max_rows=5000)
    export(store_at(moto_endpoint), file_type, data.slice(0, 6000), split)
    before = snapshot(s3)
    s3_proxy.corrupt_get("manifest.json")
    with pytest.raises(StorageError, match="FlexibleChecksumError"):
        export(store_at(s3_proxy.url), file_type, data, split)
    assert snapshot(s3) == before
    FAULTS["manifest flipped on GET"] += 1


@pytest.mark.usefixtures("s3_checks_sent_checksums")
@pytest.mark.parametrize("split", [None, Split(max_rows=40_000)], ids=["single", "split"])
@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
@pytest.mark.parametrize("where", ["first", "later"])
def test_byte_changed_after_the_writer_is_caught_by_the_crc(
    s3: Any,
    moto_endpoint: str,
    data: pa.Table,
    monkeypatch: pytest.MonkeyPatch,
    file_type: str,
    split: Split | None,
    where: str,
):
    """A bug between the format writer and boto3 (here: one bit flipped in the upload pipe).

    The commit request (PutObject, or CompleteMultipartUpload with a FULL_OBJECT CRC32) carries
    the CRC32 of the writer's bytes, so S3 (here moto, made to check it as S3 does) refuses it
    with BadDigest and no changed object is ever stored."""
    export(store_at(moto_endpoint), file_type, data.slice(0, 1000), split)
    before = snapshot(s3)
    original = Pipe.write
    seen = [0, 0]  # bytes through the pipes so far, flips done

    def flip(self: Pipe, chunk: Any) -> int:
        view = bytes(memoryview(chunk).cast("B"))
        at = 0 if where == "first" else 3 * MiB  # the first byte, or one in the second part
        if view and not seen[1] and seen[0] + len(view) > at:
            offset = max(0, at - seen[0])
            view = view[:offset] + bytes([view[offset] ^ 0x10]) + view[offset + 1 :]
            seen[1] += 1
        seen[0] += len(view)
        return original(self, view)

    monkeypatch.setattr(Pipe, "write", flip)
    pinned: list[str] = []  # the CRC32 the project sends S3 with the request that commits
    original_client = S3Resource.get_client

    def capturing(self: S3Resource) -> Any:
        client = original_client(self)

        def record(request: Any, **_: Any) -> None:
            commits = (
                request.method == "PUT"
                and "uploadId" not in request.url
                or "uploadId" in request.url
                and request.method == "POST"
            )
            if commits and "x-amz-checksum-crc32" in request.headers:
                value = request.headers["x-amz-checksum-crc32"]
                pinned.append(value.decode() if isinstance(value, bytes) else value)

        client.meta.events.register("before-send.s3.*", record)
        return client

    monkeypatch.setattr(S3Resource, "get_client", capturing)
    with pytest.raises(StorageError, match="CRC32"):
        export(store_at(moto_endpoint), file_type, data, split)
    assert seen[1] == 1
    if split is None:
        # Real S3 refuses this request (BadDigest): the CRC32 pinned on it is that of the bytes the
        # writer made, not of the changed bytes that arrived. moto stores the object anyway, so
        # here the HEAD comparison is what fails the export.
        expected = base64.b64encode(zlib.crc32(_encoded(file_type, data)).to_bytes(4, "big")).decode()
        assert pinned == [expected]
    # S3 refused the changed bytes (BadDigest): the previous export is untouched, and a split
    # export's manifest still lists the previous parts.
    after = snapshot(s3)
    assert {k: v for k, v in after.items() if k in before} == before
    if split is not None:
        assert read_manifest(store_at(moto_endpoint), KEYS[file_type]).rows == 1000
    FAULTS["byte changed between writer and boto3"] += 1


# Snowflake cut mid-result ----------------------------------------------------------------------


@pytest.fixture
def snowflake_proxy(fake_snowflake: Snowflake) -> Iterator[FaultProxy]:
    proxy = FaultProxy(fake_snowflake.host, fake_snowflake.port)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("outage", [True, False], ids=["outage", "reset"])
@pytest.mark.parametrize("seed", range(8))
def test_snowflake_cut_mid_result(
    production_env: dict, s3: Any, snowflake_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, outage: bool, seed: int
):
    """The connection to Snowflake drops while the result arrives. Either the connector's retry
    gets the whole result and the export is exact, or the export fails in bounded time, as a
    transient failure (so Dagster's RetryPolicy runs it again); never a short object.

    Observed: the connector retries a failed request but not a response cut mid-body
    (requests' ChunkedEncodingError), so there the project's own retry is what helps."""
    for name, value in {
        "SNOWFLAKE_PORT": str(snowflake_proxy.port),
        "SNOWFLAKE_NETWORK_TIMEOUT": "4",
        "SNOWFLAKE_LOGIN_TIMEOUT": "4",
    }.items():
        monkeypatch.setenv(name, value)
        production_env[name] = value
    resources = deployment_from_env(production_env).resources
    store = store_at(production_env["AWS_ENDPOINT_URL"])
    sql = "SELECT * FROM ORDERS ORDER BY O_ORDERKEY"

    def run() -> Any:
        with dg.build_resources({"snowflake": resources["snowflake"]}) as built:
            with open_export_stream(built.snowflake, sql, timeout_seconds=20, log=None, query_tag="{}") as stream:
                return write_export(
                    store, "exports/o/data.parquet", FORMATS["parquet"], stream.schema, stream.batches()
                )

    clean = run()
    s3.put_object(Bucket=BUCKET, Key="exports/o/data.parquet", Body=b"previous export")
    down = snowflake_proxy.bytes_seen[DOWN]
    snowflake_proxy.bytes_seen[DOWN] = 0
    run_bytes = down  # what one run receives; the cut falls in its later three quarters
    snowflake_proxy.cut(DOWN, random.Random(300 + seed).randint(run_bytes // 4, run_bytes - 1), outage=outage)
    started = time.monotonic()
    try:
        result = run()
    except Exception as error:  # noqa: BLE001 - any clean failure will do; a short object will not
        assert s3.get_object(Bucket=BUCKET, Key="exports/o/data.parquet")["Body"].read() == b"previous export"
        assert is_transient(error), f"a network failure must be retried: {error!r}"
        outcome = f"failed cleanly, transient ({type(error).__name__})"
    else:
        assert result.sha256 == clean.sha256 and result.rows == clean.rows
        outcome = "retried, exact"
    assert time.monotonic() - started < BUDGET_SECONDS
    assert snowflake_proxy.cuts == 1
    FAULTS[f"snowflake cut mid-result: {outcome}"] += 1


# kill -9 of the real CLI mid-upload ---------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["single", "split"])
def test_kill_9_mid_upload_then_rerun(production_env: dict, s3: Any, s3_proxy: FaultProxy, tmp_path: Path, split: bool):
    """`dagster asset materialize` is killed with SIGKILL while its multipart upload is open: no
    cleanup code runs. Readers still see the previous export; the rerun succeeds and leaves no
    unfinished upload behind."""
    key = "exports/lineitem/data.csv"
    entry: dict[str, Any] = {"table": "LINEITEM", "s3_path": key, "file_type": "csv"}
    if split:
        entry["max_rows_per_file"] = 40_000
    config = write_config(tmp_path / "exports.yaml", [entry])
    env = {
        **production_env,
        "DATA_MIGRATION_CONFIG": str(config),
        "DATA_MIGRATION_S3_PART_MIB": "5",
        "AWS_ENDPOINT_URL": s3_proxy.url,
        "DATA_MIGRATION_MAX_RETRIES": "0",
    }
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "LINEITEM"]
    assert cli(command, env, tmp_path).wait(timeout=240) == 0  # the previous, good export
    before = snapshot(s3)

    s3_proxy.throttle(1_000_000)  # about 1 MB/s, so the upload is open for several seconds
    process = cli(command, env, tmp_path)
    deadline = time.monotonic() + 120
    while not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
        assert process.poll() is None, "the run ended before its upload began"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    s3_proxy.heal()

    after = snapshot(s3)
    assert {k: v for k, v in after.items() if k in before} == before  # the previous export, whole
    if split:
        assert read_manifest(store_at(production_env["AWS_ENDPOINT_URL"]), key).content == json.loads(
            s3.get_object(Bucket=BUCKET, Key="exports/lineitem/data/manifest.json")["Body"].read()
        )
    assert open_uploads(s3) >= 1  # the killed run could not abort its upload

    assert cli(command, env, tmp_path).wait(timeout=240) == 0
    assert open_uploads(s3) == 0
    if split:
        manifest = read_manifest(store_at(production_env["AWS_ENDPOINT_URL"]), key)
        assert set(snapshot(s3)) == {"exports/lineitem/data/manifest.json", *(p.key for p in manifest.parts)}
        assert manifest.rows == LINEITEM_ROWS
    else:
        assert list(snapshot(s3)) == [key]
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body.count(b"\n") == LINEITEM_ROWS + 1
    logged = (tmp_path / "cli-output.log").read_text(errors="replace")
    assert "RUN_SUCCESS" in logged
    for secret in (SNOWFLAKE_PASSWORD_CANARY, AWS_SECRET_CANARY):
        assert secret not in logged
    FAULTS["kill -9 mid-upload (real CLI)"] += 1


def test_two_cli_runs_of_one_split_export_at_once(production_env: dict, s3: Any, s3_proxy: FaultProxy, tmp_path: Path):
    """Two `dagster asset materialize` of the same split export, started together, uploads slowed
    so that they overlap: exactly one commits; the other fails as a concurrent export, is not
    retried, and leaves nothing behind. The manifest matches the parts it lists."""
    key = "exports/lineitem/data.csv"
    config = write_config(
        tmp_path / "exports.yaml",
        [{"table": "LINEITEM", "s3_path": key, "file_type": "csv", "max_rows_per_file": 20_000}],
    )
    env = {
        **production_env,
        "DATA_MIGRATION_CONFIG": str(config),
        "AWS_ENDPOINT_URL": s3_proxy.url,
        "DATA_MIGRATION_MAX_RETRIES": "2",
        "DATA_MIGRATION_RETRY_DELAY": "0.1",
    }
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "LINEITEM"]
    s3_proxy.throttle(3_000_000)
    runs = []
    for name in ("a", "b"):
        (tmp_path / name / "dagster_home").mkdir(parents=True)
        # Two workers, each with its own Dagster instance (one SQLite home cannot be created twice at once).
        runs.append(cli(command, {**env, "DAGSTER_HOME": str(tmp_path / name / "dagster_home")}, tmp_path / name))
    codes = sorted(process.wait(timeout=240) for process in runs)
    assert codes[0] == 0 and codes[1] != 0, codes
    logs = [(tmp_path / name / "cli-output.log").read_text(errors="replace") for name in ("a", "b")]
    loser = next(log for log in logs if "RUN_FAILURE" in log)
    assert "ConcurrentWriteError" in loser and "another run" in loser
    assert "STEP_UP_FOR_RETRY" not in loser
    for secret in (SNOWFLAKE_PASSWORD_CANARY, AWS_SECRET_CANARY):
        assert all(secret not in log for log in logs)
    s3_proxy.heal()
    manifest = read_manifest(store_at(production_env["AWS_ENDPOINT_URL"]), key)
    assert manifest.rows == LINEITEM_ROWS
    listed = {p.key: p.sha256 for p in manifest.parts}
    objects = snapshot(s3)
    assert {k: v for k, v in objects.items() if k in listed} == listed
    assert set(objects) == {"exports/lineitem/data/manifest.json", *listed}
    assert open_uploads(s3) == 0
    FAULTS["two runs of one export at once (real CLI)"] += 1


LINEITEM_ROWS = 60_175  # TPC-H SF0.01


def cli(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    output = open(cwd / "cli-output.log", "ab")
    return subprocess.Popen(
        command,
        env=environment_without_settings(**env),
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed as a whole
    )


def test_fault_tally(request: pytest.FixtureRequest):
    """Runs last in this file: prints how many faults were injected and how each ended."""
    total = sum(FAULTS.values())
    print("\nInjected faults:", total)
    for name, count in sorted(FAULTS.items()):
        print(f"  {count:4d}  {name}")
    if not request.config.getoption("keyword") and not request.config.getoption("markexpr"):
        # The whole file ran: every case above injected its fault and ended as required.
        assert total >= 100


_ENCODED: dict[tuple[str, int], bytes] = {}


def _encoded(file_type: str, table: pa.Table) -> bytes:
    """The exact bytes the project's writer makes of `table` (written once, then cached)."""
    import io

    cache_key = (file_type, table.num_rows)
    if cache_key not in _ENCODED:
        sink = io.BytesIO()
        writer = FORMATS[file_type].writer(sink, table.schema)
        for batch in table.to_batches(max_chunksize=8192):
            writer.write_batch(batch)
        writer.close()
        _ENCODED[cache_key] = sink.getvalue()
    return _ENCODED[cache_key]


def _sha(file_type: str, table: pa.Table) -> str:
    return hashlib.sha256(_encoded(file_type, table)).hexdigest()
