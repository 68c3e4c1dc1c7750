"""A commit whose answer is lost: the manifest's conditional PUT reaches S3 and is applied, then
the connection drops before the answer comes back (any real network does this now and then).
botocore retries the PUT, and the retry gets 412, since the manifest is no longer at the version
it was conditioned on. The run must read the manifest back and find it committed, never take the
412 for another run's commit and delete the parts its own manifest lists.

The fault is real: FaultProxy.drop_answer between boto3 and moto lets the PUT through whole and
resets the connection instead of passing moto's 200 back. Each case asserts what a reader can see
afterwards: every file a committed manifest lists exists with the size and sha256 it lists, and a
rerun leaves every source row in the bucket exactly once.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_migration.definitions import build_definitions
from data_migration.errors import is_transient
from data_migration.files.formats import FORMATS
from data_migration.files.layout import Split, read_manifest, write_export
from data_migration.files.storage import StorageError
from data_migration.local.stages import s3_stage
from data_migration_tests.faultproxy import FaultProxy
from data_migration_tests.files.test_faults import store_at
from data_migration_tests.support import BUCKET, Snowflake, write_config


def committed_files_exist(s3: Any, manifest_key: str) -> dict[str, Any]:
    """The manifest at `manifest_key`, after asserting that every file it lists is stored with the
    size and sha256 it lists."""
    content = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    folder = manifest_key.rsplit("/", 1)[0]
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{folder}/").get("Contents", [])}
    for entry in content["files"]:
        key = f"{folder}/{entry['path']}"
        assert key in stored, f"the committed manifest lists {key}, which is not in the bucket"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert len(body) == entry["size_bytes"]
        if "sha256" in entry:
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    return content


def listed_ids(s3: Any, manifest_key: str, column: str) -> list[int]:
    content = committed_files_exist(s3, manifest_key)
    folder = manifest_key.rsplit("/", 1)[0]
    ids: list[int] = []
    for entry in content["files"]:
        body = s3.get_object(Bucket=BUCKET, Key=f"{folder}/{entry['path']}")["Body"].read()
        ids += pq.read_table(io.BytesIO(body)).column(column).to_pylist()
    return ids


def test_a_split_export_whose_commit_answer_is_lost_is_committed(s3: Any, s3_proxy: FaultProxy):
    key = "exports/lost/data.parquet"
    table = pa.table({"ID": pa.array(range(3_000), pa.int64())})
    store = store_at(s3_proxy.url, attempts=3)
    fmt = FORMATS["parquet"]
    write_export(store, key, fmt, table.schema, table.to_batches(max_chunksize=500), split=Split(max_rows=1_000))

    s3_proxy.drop_answer("PUT", "exports/lost/data/manifest.json")
    result = write_export(
        store, key, fmt, table.schema, table.to_batches(max_chunksize=500), split=Split(max_rows=1_000)
    )
    assert s3_proxy.answers_dropped == 1
    content = committed_files_exist(s3, "exports/lost/data/manifest.json")
    assert content["generation"] == result.manifest["generation"]  # this run's manifest, as it reported
    assert sorted(listed_ids(s3, "exports/lost/data/manifest.json", "ID")) == list(range(3_000))
    assert read_manifest(store, key).rows == 3_000


def test_an_increment_whose_commit_answer_is_lost_keeps_every_row_once(
    production_env: dict, s3: Any, s3_proxy: FaultProxy, fake_snowflake: Snowflake, tmp_path: Path
):
    """The issue's case: before, the runs exited 0, 1, 0 and the bucket kept 1,000 of 2,000 rows,
    with the mark past the missing ones."""
    table = f"EVENTS_{uuid.uuid4().hex[:8].upper()}"
    fake_snowflake.execute(f"CREATE TABLE {table} (ID NUMBER(38,0), NOTE VARCHAR)")

    def insert(first: int, count: int) -> None:
        values = ", ".join(f"({i}, 'note {i}')" for i in range(first, first + count))
        fake_snowflake.execute(f"INSERT INTO {table} VALUES {values}")

    entry = {"table": table, "s3_path": "exports/events/data.parquet", "incremental": {"cursor": "ID"}}
    env = {**production_env, "AWS_ENDPOINT_URL": s3_proxy.url, "DATA_MIGRATION_MAX_RETRIES": "0"}
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), env)
    instance = dg.DagsterInstance.ephemeral()
    manifest = "exports/events/data/manifest.json"

    insert(1, 1_000)
    assert run(defs, instance).success
    insert(1_001, 1_000)
    s3_proxy.drop_answer("PUT", manifest)
    second = run(defs, instance)
    assert s3_proxy.answers_dropped == 1
    assert second.success, failure(second)
    assert sorted(listed_ids(s3, manifest, "ID")) == list(range(1, 2_001))

    insert(2_001, 500)
    assert run(defs, instance).success
    assert sorted(listed_ids(s3, manifest, "ID")) == list(range(1, 2_501))  # every row exactly once


def test_an_unload_whose_commit_answer_is_lost_is_committed(
    production_env: dict, s3: Any, s3_proxy: FaultProxy, fake_snowflake: Snowflake, moto_endpoint: str, tmp_path: Path
):
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    fake_snowflake.recorder.app.stages["EXPORTS"] = s3_stage("EXPORTS", BUCKET, client)
    try:
        entry = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "method": "unload"}
        env = {
            **production_env,
            "SNOWFLAKE_EXPORT_STAGE": "EXPORTS",
            "AWS_ENDPOINT_URL": s3_proxy.url,
            "DATA_MIGRATION_MAX_RETRIES": "0",
        }
        defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), env)
        manifest = "exports/orders/data/manifest.json"
        assert run(defs, dg.DagsterInstance.ephemeral()).success
        first = committed_files_exist(s3, manifest)

        s3_proxy.drop_answer("PUT", manifest)
        second = run(defs, dg.DagsterInstance.ephemeral())
        assert s3_proxy.answers_dropped == 1
        assert second.success, failure(second)
        content = committed_files_exist(s3, manifest)
        assert content["generation"] != first["generation"] and content["row_count"] == first["row_count"]
        ids = listed_ids(s3, manifest, "O_ORDERKEY")
        assert len(ids) == len(set(ids)) == first["row_count"]
    finally:
        fake_snowflake.recorder.app.stages.pop("EXPORTS", None)


def run(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("all_exports").execute_in_process(instance=instance, raise_on_error=False)


def failure(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        str(event.step_failure_data.error.message)
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    )


# A store that ignores conditional writes -----------------------------------------------------------


@pytest.fixture
def ignoring_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto (in this process) made to behave as an S3-compatible store that ignores If-Match and
    If-None-Match on PutObject; the per-process record of stores already checked is emptied."""
    from moto.s3.responses import S3Response
    from requests.structures import CaseInsensitiveDict

    from data_migration.files.storage import s3 as s3_store

    original = S3Response.put_object

    def unconditional(self: S3Response) -> Any:
        self.headers = CaseInsensitiveDict(
            {k: v for k, v in self.headers.items() if k.lower() not in ("if-match", "if-none-match")}
        )
        return original(self)

    monkeypatch.setattr(S3Response, "put_object", unconditional)
    monkeypatch.setattr(s3_store, "_CONDITIONAL_WRITES", {})


def test_a_store_that_ignores_conditional_writes_refuses_split_exports_and_keeps_single_objects(
    s3: Any, moto_endpoint: str, ignoring_conditions: None
):
    store = store_at(moto_endpoint, attempts=3)
    table = pa.table({"ID": pa.array(range(100), pa.int64())})
    fmt = FORMATS["parquet"]
    with pytest.raises(StorageError) as raised:
        write_export(store, "exports/s/data.parquet", fmt, table.schema, table.to_batches(), split=Split(max_rows=50))
    message = str(raised.value)
    assert "does not honour conditional writes" in message and "single object" in message, message
    assert not is_transient(raised.value)
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert stored == []  # nothing written: no part, no manifest, and the probe removed
    single = write_export(store, "exports/one/data.parquet", fmt, table.schema, table.to_batches())
    assert single.rows == 100


def test_a_store_that_honours_conditional_writes_is_checked_once_per_process(
    s3: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    from data_migration.files.storage import s3 as s3_store

    monkeypatch.setattr(s3_store, "_CONDITIONAL_WRITES", {})
    probes: list[str] = []
    table = pa.table({"ID": pa.array(range(100), pa.int64())})
    for name in ("a", "b"):
        store = store_at(moto_endpoint, attempts=3)
        client = store._client()
        client.meta.events.register(
            "before-parameter-build.s3.PutObject",
            lambda params, **_: probes.append(params["Key"]) if s3_store.PROBE_NAME in params["Key"] else None,
        )
        write_export(
            store,
            f"exports/{name}/data.parquet",
            FORMATS["parquet"],
            table.schema,
            table.to_batches(),
            split=Split(max_rows=50),
        )
    assert probes == [f"exports/a/data/{s3_store.PROBE_NAME}"] * 2  # created, then refused with 412
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert not any(s3_store.PROBE_NAME in key for key in stored)
