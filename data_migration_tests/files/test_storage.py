"""Object stores write all-or-nothing: a failed write leaves the previous object, never a partial one."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from dagster_aws.s3 import S3Resource

from data_migration.files.storage import LocalObjectStore, StorageError
from data_migration_tests.support import BUCKET, s3_store

MiB = 1024 * 1024


def chunks(total: int, size: int = 1 * MiB) -> list[bytes]:
    data = os.urandom(total)
    return [data[i : i + size] for i in range(0, total, size)]


class Boom(Exception):
    pass


@pytest.mark.parametrize("total", [0, 1000, 12 * MiB])
def test_s3_round_trip(s3: Any, moto_endpoint: str, total: int):
    store = s3_store(moto_endpoint)
    parts = chunks(total)
    with store.open_write("exports/x/data.bin", "application/octet-stream") as sink:
        for part in parts:
            sink.write(part)
    body = s3.get_object(Bucket=BUCKET, Key="exports/x/data.bin")["Body"].read()
    assert body == b"".join(parts)
    assert sink.stored.size == total
    assert sink.stored.sha256 == hashlib.sha256(body).hexdigest()
    assert sink.stored.uri == f"s3://{BUCKET}/exports/x/data.bin"
    with store.open_read("exports/x/data.bin") as handle:
        assert handle.read() == body
    assert store.exists("exports/x/data.bin") and not store.exists("exports/x/other.bin")


@pytest.mark.parametrize("total", [1000, 12 * MiB])  # one PutObject; a three-part multipart upload
@pytest.mark.parametrize("where", ["s3", "local"])
def test_stat_and_suffix_read_without_reading_the_object(
    s3: Any, moto_endpoint: str, tmp_path: Path, total: int, where: str
):
    """What the default asset checks use: the size and stored CRC32 (the CRC32 of the whole
    object, the one recorded at write time), and the last bytes in one ranged read."""
    store = s3_store(moto_endpoint) if where == "s3" else LocalObjectStore(root=str(tmp_path))
    body = b"".join(chunks(total))
    with store.open_write("exports/x/data.bin", "application/octet-stream") as sink:
        sink.write(body)
    whole = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert sink.stored.checksum == whole
    stat = store.stat("exports/x/data.bin")
    assert stat is not None and (stat.size, stat.checksum) == (total, whole)
    assert store.stat("exports/x/none.bin") is None
    assert store.read_suffix("exports/x/data.bin", 10) == (total, body[-10:])
    assert store.read_suffix("exports/x/data.bin", total + 5) == (total, body)  # shorter than asked


@pytest.mark.parametrize("fail_after", [0, 2 * MiB, 12 * MiB])
def test_s3_failure_leaves_previous_object_and_no_upload(s3: Any, moto_endpoint: str, fail_after: int):
    key = "exports/x/data.bin"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"previous good export")
    store = s3_store(moto_endpoint)
    with pytest.raises(Boom):
        with store.open_write(key, "application/octet-stream") as sink:
            for part in chunks(fail_after):
                sink.write(part)
            raise Boom("the writer failed partway")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"previous good export"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_s3_failure_with_no_previous_object_leaves_nothing(s3: Any, moto_endpoint: str):
    store = s3_store(moto_endpoint)
    with pytest.raises(Boom):
        with store.open_write("exports/new/data.bin", "application/octet-stream") as sink:
            for part in chunks(7 * MiB):
                sink.write(part)
            raise Boom()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_s3_missing_bucket_is_named(s3: Any, moto_endpoint: str):
    store = s3_store(moto_endpoint, bucket="no-such-bucket")
    with pytest.raises(
        StorageError, match="s3://no-such-bucket/k: upload failed: bucket 'no-such-bucket' does not exist"
    ):
        with store.open_write("k", "text/plain") as sink:
            sink.write(b"x" * 100)


def test_s3_upload_failure_stops_a_large_writer(s3: Any, moto_endpoint: str):
    """The upload dies while the writer is still producing: the writer gets an error, not a hang."""
    store = s3_store(moto_endpoint, bucket="no-such-bucket")
    with pytest.raises(StorageError):
        with store.open_write("k", "text/plain") as sink:
            for part in chunks(40 * MiB):
                sink.write(part)


def test_local_store_commits_atomically(tmp_path: Path):
    store = LocalObjectStore(root=str(tmp_path / "bucket"))
    with store.open_write("exports/a/data.csv", "text/csv") as sink:
        sink.write(b"a,b\n")
    path = tmp_path / "bucket" / "exports" / "a" / "data.csv"
    assert path.read_bytes() == b"a,b\n"
    assert sink.stored.uri == path.resolve().as_uri()
    assert sink.stored.sha256 == hashlib.sha256(b"a,b\n").hexdigest()

    with pytest.raises(Boom):
        with store.open_write("exports/a/data.csv", "text/csv") as sink:
            sink.write(b"half of a new file")
            raise Boom()
    assert path.read_bytes() == b"a,b\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.csv"]  # no partial file left


def test_s3_next_write_aborts_uploads_left_by_killed_runs(s3: Any, moto_endpoint: str):
    """What `kill -9` mid-upload leaves behind: an unfinished multipart upload with a part."""
    key = "exports/x/data.bin"
    orphan = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key=key, UploadId=orphan, PartNumber=1, Body=b"x" * (5 * MiB))
    other = s3.create_multipart_upload(Bucket=BUCKET, Key="exports/other/data.bin")["UploadId"]
    store = s3_store(moto_endpoint)
    with store.open_write(key, "application/octet-stream") as sink:
        sink.write(b"fresh export")
    assert sink.stored.stale_uploads_removed == 1
    remaining = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in remaining] == [("exports/other/data.bin", other)]  # not ours to touch
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"fresh export"


def test_s3_failed_write_aborts_nothing_of_others(s3: Any, moto_endpoint: str):
    key = "exports/x/data.bin"
    orphan = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    with pytest.raises(Boom):
        with s3_store(moto_endpoint).open_write(key, "application/octet-stream") as sink:
            sink.write(b"partial")
            raise Boom()
    # Only a committed write may clean up: after a failure the old upload is still there.
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]] == [orphan]


def test_local_next_write_removes_partial_files_left_by_killed_runs(tmp_path: Path):
    store = LocalObjectStore(root=str(tmp_path))
    folder = tmp_path / "exports" / "a"
    folder.mkdir(parents=True)
    leftover = folder / ".data.csv.0123abcd.partial"
    leftover.write_bytes(b"half a file from a killed run")
    unrelated = folder / ".other.csv.99.partial"
    unrelated.write_bytes(b"not ours")
    with store.open_write("exports/a/data.csv", "text/csv") as sink:
        sink.write(b"a\n")
    assert sink.stored.stale_uploads_removed == 1
    assert sorted(p.name for p in folder.iterdir()) == [".other.csv.99.partial", "data.csv"]


@pytest.mark.parametrize("send_checksums", [True, False], ids=["aws", "s3-compatible"])
@pytest.mark.parametrize("total", [1000, 12 * MiB])
def test_checksum_header_is_sent_unless_s3_compatible(
    s3: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, send_checksums: bool, total: int
):
    """The default path sends a CRC32 with every upload request (seen on the wire by a botocore
    before-send hook); the S3-compatible switch (AWS_REQUEST_CHECKSUM_CALCULATION=when_required,
    which botocore also reads) sends none. Both store the bytes exactly."""
    if not send_checksums:
        monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    puts: list[str] = []
    original = S3Resource.get_client

    def hooked(self: S3Resource) -> Any:
        client = original(self)

        def record(request: Any, **_: Any) -> None:
            if request.method == "PUT":  # PutObject and UploadPart: the requests with data
                puts.append(" ".join(f"{k}: {v}" for k, v in request.headers.items()).lower())

        client.meta.events.register("before-send.s3.*", record)
        return client

    monkeypatch.setattr(S3Resource, "get_client", hooked)
    store = s3_store(moto_endpoint).model_copy(update={"send_checksums": send_checksums})
    data = b"".join(chunks(total))
    with store.open_write("exports/x/data.bin", "application/octet-stream") as sink:
        sink.write(data)
    assert len(puts) == (1 if total < 5 * MiB else 3)
    for headers in puts:
        assert ("x-amz-checksum-crc32" in headers) is send_checksums, headers
    assert s3.get_object(Bucket=BUCKET, Key="exports/x/data.bin")["Body"].read() == data


def test_s3_compatible_mode_from_the_environment():
    from data_migration.resources import SettingsError, deployment_from_env

    env = {
        "SNOWFLAKE_ACCOUNT": "a",
        "SNOWFLAKE_USER": "u",
        "SNOWFLAKE_PASSWORD": "p",
        "S3_BUCKET_NAME": "bucket-x",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    assert deployment_from_env(env).resources["object_store"].send_checksums is True
    compatible = deployment_from_env({**env, "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED"}).resources[
        "object_store"
    ]
    assert compatible.send_checksums is False and "S3-compatible mode" in compatible.describe()
    with pytest.raises(SettingsError, match="AWS_REQUEST_CHECKSUM_CALCULATION='never'"):
        deployment_from_env({**env, "AWS_REQUEST_CHECKSUM_CALCULATION": "never"})
