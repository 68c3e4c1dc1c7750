"""Least privilege, enforced: moto's server with IAM checks on, and the policy of
docs/iam-policy.json, loaded from the file: put, abort and read back under exports/, list
unfinished uploads (required), and delete and list under exports/ (so that a split export removes
its earlier generations); nothing outside exports/.

This moto runs in its own process, since IAM enforcement is a process-wide moto setting.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
import requests
from dagster_aws.s3 import S3Resource

from data_migration.errors import is_transient
from data_migration.files.formats import FORMATS
from data_migration.files.layout import Split, read_committed, read_manifest, write_export
from data_migration.files.storage import S3ObjectStore, StorageError

BUCKET = "iam-exports"
# The policy docs/permissions.md gives, as its file: every statement (the full policy), and its
# required statements only (without the two that let a split export remove earlier generations).
POLICY_FILE = Path(__file__).resolve().parents[2] / "docs" / "iam-policy.json"
FULL_POLICY = json.loads(POLICY_FILE.read_text().replace("my-export-bucket", BUCKET))
OPTIONAL = {"RemoveEarlierGenerations", "ListEarlierGenerations"}
WRITER_POLICY = {**FULL_POLICY, "Statement": [s for s in FULL_POLICY["Statement"] if s["Sid"] not in OPTIONAL]}
# Each policy, with manifests denied to GetObject (as a bucket policy's Deny or a missing
# kms:Decrypt on an SSE-KMS object makes S3 answer 403 to a manifest that exists).
NO_MANIFEST_READ = {
    "Sid": "NoManifestRead",
    "Effect": "Deny",
    "Action": ["s3:GetObject"],
    "Resource": f"arn:aws:s3:::{BUCKET}/exports/*/manifest.json",
}
USERS = {
    "svc_exporter": WRITER_POLICY,
    "svc_full": FULL_POLICY,
    "svc_full_unread": {**FULL_POLICY, "Statement": [*FULL_POLICY["Statement"], NO_MANIFEST_READ]},
    "svc_writer_unread": {**WRITER_POLICY, "Statement": [*WRITER_POLICY["Statement"], NO_MANIFEST_READ]},
}


@pytest.fixture(scope="module")
def iam_moto() -> Iterator[tuple[str, dict[str, str], dict[str, str], dict[str, dict[str, str]]]]:
    """(endpoint, the credentials of a user with the required statements, of one with the full
    policy, every user's by name). The first requests (setup: the bucket, three per user) are not
    checked."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(1 + 3 * len(USERS))},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    admin = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "admin",
        "aws_secret_access_key": "admin",
    }
    boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **admin)
    credentials = {}
    for user, policy in USERS.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="writer", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        credentials[user] = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    yield endpoint, credentials["svc_exporter"], credentials["svc_full"], credentials
    server.terminate()
    server.wait(timeout=10)


def store(iam_moto: Any, full: bool = False, user: str | None = None) -> S3ObjectStore:
    endpoint, credentials = iam_moto[0], iam_moto[3][user] if user else iam_moto[2 if full else 1]
    return S3ObjectStore(
        s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1", **credentials), bucket=BUCKET, part_size_mib=5
    )


def data(rows: int) -> pa.Table:
    return pa.table({"ID": pa.array(range(rows), pa.int64()), "TEXT": pa.array([f"{i:08d}" * 40 for i in range(rows)])})


def export(target: S3ObjectStore, key: str, table: pa.Table, split: Split | None = None) -> Any:
    return write_export(target, key, FORMATS["csv"], table.schema, table.to_batches(max_chunksize=5000), split=split)


@pytest.mark.parametrize("rows", [100, 30_000])  # one PutObject; a multipart upload (about 10 MB)
def test_the_writer_policy_is_enough(iam_moto: Any, rows: int):
    result = export(store(iam_moto), "exports/ok/data.csv", data(rows))
    assert result.rows == rows
    with store(iam_moto).open_read("exports/ok/data.csv") as source:
        assert FORMATS["csv"].reader.count_rows(source) == rows


def test_a_key_outside_the_policy_fails_at_once_naming_it(iam_moto: Any):
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        export(store(iam_moto), "other/data.csv", data(100))
    message = str(raised.value)
    assert f"s3://{BUCKET}/other/data.csv" in message and "AccessDenied" in message
    assert not is_transient(raised.value)  # Dagster's RetryPolicy will not retry it
    assert iam_moto[1]["aws_secret_access_key"] not in message
    assert time.monotonic() - started < 10


def test_split_export_commits_without_list_or_delete_permission(iam_moto: Any, caplog: pytest.LogCaptureFixture):
    """No s3:DeleteObject or s3:ListBucket: superseded parts stay (listed by no manifest, so
    unseen by readers) with a warning. (Real S3 also answers the first run's read of the missing
    manifest with 403 rather than 404 here; moto answers 404, so that case has its own test.)"""
    key = "exports/split/data.csv"
    first = export(store(iam_moto), key, data(2500), Split(max_rows=1000))
    with caplog.at_level(logging.WARNING):
        second = export(store(iam_moto), key, data(1500), Split(max_rows=1000))
    manifest = read_manifest(store(iam_moto), key)
    assert manifest.rows == 1500 and [p.key for p in manifest.parts] == [p.key for p in second.files]
    assert first.files[0].key not in {p.key for p in manifest.parts}
    assert "not allowed to list" in caplog.text


def test_the_full_policy_lets_a_split_export_remove_its_earlier_generations(
    iam_moto: Any, caplog: pytest.LogCaptureFixture
):
    key = "exports/split_full/data.csv"
    first = export(store(iam_moto, full=True), key, data(2500), Split(max_rows=1000))
    with caplog.at_level(logging.WARNING):
        second = export(store(iam_moto, full=True), key, data(1500), Split(max_rows=1000))
    assert "not allowed" not in caplog.text, caplog.text
    manifest = read_manifest(store(iam_moto, full=True), key)
    assert [p.key for p in manifest.parts] == [p.key for p in second.files]
    lister = boto3.client("s3", endpoint_url=iam_moto[0], region_name="us-east-1", **iam_moto[2])  # may list exports/
    left = {item["Key"] for item in lister.list_objects_v2(Bucket=BUCKET, Prefix="exports/split_full/")["Contents"]}
    assert not left & {part.key for part in first.files}, "the earlier generation is removed"


def test_missing_manifest_answered_with_403_counts_as_absent(iam_moto: Any, monkeypatch: pytest.MonkeyPatch):
    from botocore.stub import Stubber

    target = store(iam_moto)
    client = target.s3.get_client()
    stubber = Stubber(client)
    # Without s3:ListBucket: the read answers 403, and so does the listing that would tell.
    stubber.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    stubber.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403)
    stubber.add_client_error("get_object", service_error_code="InternalError", http_status_code=500)
    monkeypatch.setattr(S3Resource, "get_client", lambda self: client)
    with stubber:
        assert target.read_versioned("exports/new/manifest.json") is None
        with pytest.raises(StorageError, match="InternalError"):
            target.read_versioned("exports/new/manifest.json")


def test_a_manifest_that_exists_but_may_not_be_read_is_an_error_naming_the_permission(iam_moto: Any):
    """With s3:ListBucket a 403 on a manifest that the listing shows is a permission error, never
    "no manifest yet" (which would make an increment start again, or a split export blame a
    concurrent run). The committed export is left as it was."""
    key = "exports/unread/data.csv"
    export(store(iam_moto, full=True), key, data(2500), Split(max_rows=1000))
    before = read_manifest(store(iam_moto, full=True), key)
    denied = store(iam_moto, user="svc_full_unread")
    for attempt in (
        lambda: denied.read_versioned("exports/unread/data/manifest.json"),
        lambda: read_committed(denied, key),  # what an increment and skip_unchanged read
        lambda: export(denied, key, data(1500), Split(max_rows=1000)),
    ):
        with pytest.raises(StorageError) as raised:
            attempt()
        message = str(raised.value)
        assert "exists, but this identity may not read it" in message, message
        assert "s3:GetObject" in message and "kms:Decrypt" in message and "ConcurrentWrite" not in message
        assert not is_transient(raised.value)
    assert read_manifest(store(iam_moto, full=True), key).content == before.content
    # A manifest that does not exist is still absent for the same identity (the listing says so).
    assert denied.read_versioned("exports/nothing/data/manifest.json") is None


def test_without_list_a_manifest_that_may_not_be_read_is_named_at_the_commit(
    iam_moto: Any, caplog: pytest.LogCaptureFixture
):
    """Without s3:ListBucket a 403 cannot tell a missing manifest from one that may not be read,
    so it counts as absent (as S3 answers a first run's read); the create-only commit then meets
    the manifest (412), and the error names the permissions rather than a concurrent run. The
    run's parts are left in place, since it could not read back what the manifest lists."""
    key = "exports/unread_writer/data.csv"
    export(store(iam_moto, full=True), key, data(2500), Split(max_rows=1000))
    before = read_manifest(store(iam_moto, full=True), key)
    with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as raised:
        export(store(iam_moto, user="svc_writer_unread"), key, data(1500), Split(max_rows=1000))
    message = str(raised.value)
    assert "exists (a create-only write answered 412), but this identity may not read it" in message, message
    assert "s3:GetObject" in message and "ConcurrentWrite" not in message
    assert "could not read the manifest back" in caplog.text
    assert read_manifest(store(iam_moto, full=True), key).content == before.content
