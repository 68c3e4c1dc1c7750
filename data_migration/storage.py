"""Where export files go: an S3 bucket, or a local folder standing in for one.

Both stores write an object all-or-nothing: readers see the previous object or the complete new
one, never a partial one. S3 guarantees that for a single PutObject or multipart upload, so the
S3 store streams into one upload and aborts it on any failure; the local store writes a hidden
temporary file and renames it into place.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import logging
import os
import tempfile
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig
from dagster import ConfigurableResource, InitResourceContext
from dagster_aws.s3 import S3Resource
from pydantic import Field

MiB = 1024 * 1024
log = logging.getLogger(__name__)
_DESCRIBED_RUNS: set[str | None] = set()


class StorageError(RuntimeError):
    """An object could not be written or verified; the message names the bucket and key."""


@dataclass(frozen=True)
class StoredObject:
    uri: str
    size: int
    sha256: str
    # Unfinished uploads of the same key, begun before this write, removed after it committed.
    stale_uploads_removed: int = 0


class Sink(io.RawIOBase):
    """What a format writer writes to: counts and hashes bytes on their way to the store."""

    def __init__(self, target: Any):
        super().__init__()
        self._target = target
        self.size = 0
        self._sha256 = hashlib.sha256()
        self.stored: StoredObject | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._target.write(view)
        self._sha256.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


class ObjectStore(ConfigurableResource):
    """Base for the stores; one instance serves every export of a run."""

    def uri(self, key: str) -> str:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Each file type's IO manager holds the store, so this runs once per IO manager.
        run_id = context.run.run_id if context.run else None
        if context.log and run_id not in _DESCRIBED_RUNS:
            _DESCRIBED_RUNS.add(run_id)
            context.log.info(f"Destination: {self.describe()}")

    def open_write(self, key: str, content_type: str) -> Any:
        """Context manager yielding a Sink; commits on a normal exit, discards on an exception.

        After a normal exit, `sink.stored` describes the committed object.
        """
        raise NotImplementedError

    def open_read(self, key: str) -> Any:
        """Context manager yielding a seekable binary file with the object's bytes."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    # Small objects (manifests), with a version token for compare-and-swap.
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and a token that changes whenever it is rewritten; None if absent."""
        raise NotImplementedError

    def put_if_unchanged(self, key: str, data: bytes, content_type: str, version: str | None) -> StoredObject:
        """Write `key` only if it is still at `version` (None: only if it does not exist).

        Raises ConcurrentWriteError when another writer got there first.
        """
        raise NotImplementedError

    def list_keys(self, prefix: str) -> list[str] | None:
        """Keys under `prefix`; None when the store does not allow listing (no s3:ListBucket)."""
        raise NotImplementedError

    def delete_keys(self, keys: list[str]) -> int:
        """Delete what it may, best effort; returns how many were deleted."""
        raise NotImplementedError

    def abort_uploads_under(self, prefix: str, started_before: datetime) -> int:
        """Abort unfinished uploads under `prefix` begun before `started_before` (killed runs)."""
        return 0


class ConcurrentWriteError(StorageError):
    """A conditional write lost: another run changed the object since this run read it."""


class LocalObjectStore(ObjectStore):
    """A folder standing in for a bucket: `<root>/<s3_path>`, the same key layout as S3."""

    root: str = Field(description="Folder that plays the bucket.")

    @property
    def kind(self) -> str:
        return "local"

    def describe(self) -> str:
        return f"local folder {self.root} (standing in for an S3 bucket)"

    def _path(self, key: str) -> Path:
        return Path(self.root) / key

    def uri(self, key: str) -> str:
        return self._path(key).resolve().as_uri()

    @contextmanager
    def open_write(self, key: str, content_type: str) -> Iterator[Sink]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Left by writers that were killed (or are still running) before this one began.
        earlier = list(path.parent.glob(f".{path.name}.*.partial"))
        # Hidden, in the same folder (so the rename is atomic), and unique per writer.
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as handle:
                sink = Sink(handle)
                yield sink
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        for leftover in earlier:
            leftover.unlink(missing_ok=True)
        sink.stored = StoredObject(
            uri=self.uri(key), size=sink.size, sha256=sink.sha256, stale_uploads_removed=len(earlier)
        )

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with open(self._path(key), "rb") as handle:
            yield handle

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def put_if_unchanged(self, key: str, data: bytes, content_type: str, version: str | None) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An exclusive lock makes read-compare-replace one step for every writer on this machine.
        with open(path.with_name(f".{path.name}.lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_versioned(key)
            if (current[1] if current else None) != version:
                raise ConcurrentWriteError(
                    f"{self.uri(key)}: changed by another run since this run began "
                    f"({'created' if version is None else 'rewritten' if current else 'deleted'} meanwhile)"
                )
            with self.open_write(key, content_type) as sink:
                sink.write(data)
        assert sink.stored is not None
        return sink.stored

    def list_keys(self, prefix: str) -> list[str] | None:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        root = Path(self.root)
        return sorted(
            path.relative_to(root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )

    def delete_keys(self, keys: list[str]) -> int:
        deleted = 0
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
                deleted += 1
            except FileNotFoundError:
                continue
            for parent in path.parents:  # drop folders the deletions emptied, as S3 would
                if parent == Path(self.root) or any(parent.iterdir()):
                    break
                parent.rmdir()
        return deleted

    def abort_uploads_under(self, prefix: str, started_before: datetime) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        removed = 0
        for partial in folder.rglob(".*.partial"):
            if datetime.fromtimestamp(partial.stat().st_mtime, timezone.utc) < started_before:
                partial.unlink(missing_ok=True)
                removed += 1
        return removed


class S3ObjectStore(ObjectStore):
    """A bucket, written through boto3's managed (multipart) transfer on the S3Resource's client."""

    s3: S3Resource
    bucket: str = Field(description="Bucket every export's s3_path is a key in.")
    part_size_mib: int = Field(default=16, description="Multipart part size (S3 minimum 5).")
    max_concurrency: int = Field(default=4, description="Parts uploaded at once per export.")
    send_checksums: bool = Field(
        default=True,
        description="Send a CRC32 with every upload (off for S3-compatible stores that reject them).",
    )

    @property
    def kind(self) -> str:
        return "s3"

    def describe(self) -> str:
        checksums = "" if self.send_checksums else " (S3-compatible mode: no upload checksums sent; sizes still verified)"
        return f"S3 bucket {self.bucket!r}{checksums}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _checksum_args(self, full_object: bool = False) -> dict[str, str]:
        if not self.send_checksums:
            return {}
        return {"ChecksumAlgorithm": "CRC32", **({"ChecksumType": "FULL_OBJECT"} if full_object else {})}

    def _transfer_config(self) -> TransferConfig:
        part = self.part_size_mib * MiB
        config = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=self.max_concurrency
        )
        # Bounds the memory of a streamed upload: parts read from the stream while earlier ones
        # upload (s3transfer's setting; boto3's constructor does not take it).
        config.max_in_memory_upload_chunks = self.max_concurrency + 2
        return config

    @contextmanager
    def open_write(self, key: str, content_type: str) -> Iterator[Sink]:
        client = self.s3.get_client()
        # Unfinished uploads of this key begun before this write: orphans of killed runs (billed
        # until aborted), or older writers whose data must not land over newer data. Aborted
        # once this write has committed; uploads begun after it are left alone.
        earlier = self._open_uploads(client, key)
        pipe = _Pipe(capacity=self.part_size_mib * MiB)
        failure: list[BaseException] = []
        crc = _Crc32Tee(pipe, part_size=self.part_size_mib * MiB)
        if self.send_checksums:
            _pin_full_object_crc32(client, crc)

        def upload() -> None:
            try:
                # Reads the pipe until EOF. A read that raises fails the transfer, and
                # s3transfer then aborts the multipart upload: no object appears.
                client.upload_fileobj(
                    pipe,
                    self.bucket,
                    key,
                    ExtraArgs={"ContentType": content_type, **self._checksum_args(full_object=True)},
                    Config=self._transfer_config(),
                )
            except BaseException as error:  # noqa: BLE001 - handed to the writing thread
                failure.append(error)
                pipe.close_reader()

        uploader = threading.Thread(target=upload, name=f"upload {key}", daemon=True)
        uploader.start()
        sink = Sink(crc)
        try:
            yield sink
        except BaseException as error:
            pipe.fail(error)
            uploader.join()
            if failure and not isinstance(failure[0], _ProducerFailed):
                # The upload broke first; the writer's error is only its echo.
                raise self._error("upload failed", key, failure[0]) from failure[0]
            raise
        pipe.finish()
        uploader.join()
        if failure:
            raise self._error("upload failed", key, failure[0]) from failure[0]
        self._verify(client, key, sink, crc)
        removed = self._abort_uploads(client, key, earlier)
        sink.stored = StoredObject(uri=self.uri(key), size=sink.size, sha256=sink.sha256, stale_uploads_removed=removed)

    def _open_uploads(self, client: Any, key: str) -> list[str] | None:
        """Upload ids of unfinished multipart uploads of exactly `key`; None if we may not list them."""
        from botocore.exceptions import ClientError

        ids: list[str] = []
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=key):
                ids += [u["UploadId"] for u in page.get("Uploads", []) if u["Key"] == key]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "AccessDenied":
                raise self._error("upload failed", key, error) from error
            log.warning(
                f"{self.uri(key)}: not allowed to list unfinished uploads (s3:ListBucketMultipartUploads); "
                "leaving any from killed runs to the bucket's AbortIncompleteMultipartUpload rule"
            )
            return None
        return ids

    def _abort_uploads(self, client: Any, key: str, upload_ids: list[str] | None) -> int:
        from botocore.exceptions import ClientError

        aborted = 0
        for upload_id in upload_ids or []:
            try:
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                aborted += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "NoSuchUpload":  # finished meanwhile
                    log.warning(f"{self.uri(key)}: could not abort unfinished upload {upload_id}: {error}")
        return aborted

    def _verify(self, client: Any, key: str, sink: Sink, crc: _Crc32Tee) -> None:
        """The stored object has exactly the bytes written: its size, and its CRC32 as S3 stored it.

        boto3 computes the CRC32 of what it sends and S3 checks it on arrival; comparing S3's
        stored value with the CRC32 of the bytes as the writer produced them also covers the way
        from the writer to boto3.
        """
        head = client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head["ContentLength"] != sink.size:
            raise StorageError(
                f"{self.uri(key)}: stored object is {head['ContentLength']} bytes, "
                f"but {sink.size} were written"
            )
        stored = head.get("ChecksumCRC32")
        if stored is None:  # an S3-compatible store that keeps no checksums: the size must do
            return
        expected = crc.candidates()
        if stored.split("-", 1)[0] not in expected:
            raise StorageError(
                f"{self.uri(key)}: stored object's CRC32 is {stored}, but the bytes written have "
                f"{' or '.join(sorted(expected))}"
            )

    def _error(self, what: str, key: str, cause: BaseException) -> StorageError:
        code = _code(cause)
        detail = f"{type(cause).__name__}" + (f" {code}" if code else "") + f": {cause}"
        if code == "NoSuchBucket":
            detail = f"bucket {self.bucket!r} does not exist ({type(cause).__name__})"
        return StorageError(f"{self.uri(key)}: {what}: {detail}")

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        client = self.s3.get_client()
        with tempfile.SpooledTemporaryFile(max_size=64 * MiB) as buffer:
            client.download_fileobj(self.bucket, key, buffer)
            buffer.seek(0)
            yield buffer  # type: ignore[misc]

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.s3.get_client().get_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            # botocore checks the body against the stored CRC32 as it reads (FlexibleChecksumError).
            return response["Body"].read(), response["ETag"]
        except ClientError as error:
            # Without s3:ListBucket (the writer policy has none), S3 answers a missing key with
            # 403 rather than 404. Taken as absent: the create-only commit then fails with 412
            # if the object does exist.
            if _code(error) in ("404", "NoSuchKey", "NotFound", "AccessDenied"):
                return None
            raise self._error("read failed", key, error) from error
        except BotoCoreError as error:
            raise self._error("read failed", key, error) from error

    def put_if_unchanged(self, key: str, data: bytes, content_type: str, version: str | None) -> StoredObject:
        from botocore.exceptions import ClientError

        # S3's conditional writes: If-None-Match creates only; If-Match is compare-and-swap.
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            self.s3.get_client().put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                **self._checksum_args(), **condition,
            )
        except ClientError as error:
            if _code(error) in ("PreconditionFailed", "412"):
                raise ConcurrentWriteError(
                    f"{self.uri(key)}: changed by another run since this run began (412 PreconditionFailed)"
                ) from error
            if version is not None and _code(error) in ("NoSuchKey", "404"):
                raise ConcurrentWriteError(f"{self.uri(key)}: deleted by another run since this run began") from error
            # 409 ConditionalRequestConflict: a conflicting write in flight; transient, retried.
            raise self._error("write failed", key, error) from error
        return StoredObject(uri=self.uri(key), size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def list_keys(self, prefix: str) -> list[str] | None:
        from botocore.exceptions import ClientError

        keys: list[str] = []
        try:
            for page in self.s3.get_client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", [])]
        except ClientError as error:
            if _code(error) != "AccessDenied":
                raise self._error("listing failed", prefix, error) from error
            log.warning(f"{self.uri(prefix)}: not allowed to list (s3:ListBucket); old files are left in place")
            return None
        return sorted(keys)

    def delete_keys(self, keys: list[str]) -> int:
        client = self.s3.get_client()
        deleted = 0
        for key in keys:
            try:
                client.delete_object(Bucket=self.bucket, Key=key)
                deleted += 1
            except Exception as error:  # noqa: BLE001 - best effort, e.g. during the outage that failed the run
                log.warning(
                    f"{self.uri(key)}: could not delete ({_code(error) or type(error).__name__}); "
                    "no manifest lists it, and the next run removes it"
                )
        return deleted

    def abort_uploads_under(self, prefix: str, started_before: datetime) -> int:
        from botocore.exceptions import ClientError

        client = self.s3.get_client()
        stale: list[tuple[str, str]] = []
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                stale += [
                    (upload["Key"], upload["UploadId"])
                    for upload in page.get("Uploads", [])
                    if upload["Initiated"] < started_before
                ]
        except ClientError as error:
            if _code(error) != "AccessDenied":
                raise self._error("listing uploads failed", prefix, error) from error
            return 0
        aborted = 0
        for key, upload_id in stale:
            aborted += self._abort_uploads(client, key, [upload_id])
        return aborted

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        client = self.s3.get_client()
        try:
            client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


def _pin_full_object_crc32(client: Any, crc: _Crc32Tee) -> None:
    """Send S3 the CRC32 of the bytes as the writer produced them, for S3 to check before it
    stores the object: on the PutObject of a small object, and on CompleteMultipartUpload (a
    FULL_OBJECT checksum) of a large one. Both requests are made only after the writer finished,
    so the value is final. Bytes changed anywhere between the writer and S3 then make S3 refuse
    the object (BadDigest), instead of storing it with a checksum botocore computed from the
    changed bytes. (moto does not check it; the HEAD comparison in _verify backs it up.)
    """

    def put_object(params: dict, **_: Any) -> None:
        params["ChecksumCRC32"] = crc.whole_object()

    def complete(params: dict, **_: Any) -> None:
        params["ChecksumCRC32"] = crc.whole_object()
        params["ChecksumType"] = "FULL_OBJECT"

    client.meta.events.register("before-parameter-build.s3.PutObject", put_object)
    client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", complete)


class _Crc32Tee(io.RawIOBase):
    """Passes bytes on, keeping the CRC32 S3 will report: of the whole object, and of each part.

    A multipart upload's checksum is, by default, the CRC32 of its parts' CRC32s (composite);
    s3transfer cuts a stream into parts of exactly `part_size`, and uploads an object shorter
    than that with a single PutObject, whose checksum is the whole object's.
    """

    def __init__(self, target: Any, part_size: int):
        super().__init__()
        self._target = target
        self._part_size = part_size
        self._whole = 0
        self._part = 0
        self._in_part = 0
        self._parts: list[int] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._target.write(view)
        self._whole = zlib.crc32(view, self._whole)
        offset = 0
        while offset < len(view):
            take = min(len(view) - offset, self._part_size - self._in_part)
            self._part = zlib.crc32(view[offset : offset + take], self._part)
            self._in_part += take
            offset += take
            if self._in_part == self._part_size:
                self._parts.append(self._part)
                self._part, self._in_part = 0, 0
        self.size += len(view)
        return len(view)

    def whole_object(self) -> str:
        return base64.b64encode(self._whole.to_bytes(4, "big")).decode()

    def candidates(self) -> set[str]:
        """Base64 CRC32 values S3 may report: whole object (FULL_OBJECT), or composite."""
        encode = lambda value: base64.b64encode(value.to_bytes(4, "big")).decode()  # noqa: E731
        values = {encode(self._whole)}
        if self.size >= self._part_size:
            parts = self._parts + ([self._part] if self._in_part else [])
            values.add(encode(zlib.crc32(b"".join(p.to_bytes(4, "big") for p in parts))))
        return values


def _code(error: Any) -> str | None:
    # Not only ClientError has a `response`; some botocore errors carry one that is None.
    response = getattr(error, "response", None)
    return (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None


class _ProducerFailed(Exception):
    """Raised to the uploading thread when the export failed before the end of the data."""


class _Pipe(io.RawIOBase):
    """A bounded byte pipe from the writing thread to the uploading thread.

    End of data is only ever signalled by finish(): a failure on either side raises on the other,
    so a failed export can never look like a short, complete file to the uploader.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self._buffer = bytearray()
        self._capacity = capacity
        self._lock = threading.Condition()
        self._finished = False
        self._failed: BaseException | None = None
        self._reader_closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    # writing side
    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        with self._lock:
            while len(self._buffer) >= self._capacity and not self._reader_closed:
                self._lock.wait()
            if self._reader_closed:
                raise StorageError("the upload stopped before all data was written")
            self._buffer += view
            self._lock.notify_all()
        return len(view)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._lock.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self._failed = error
            self._lock.notify_all()

    def close_reader(self) -> None:
        with self._lock:
            self._reader_closed = True
            self._lock.notify_all()

    # reading side (s3transfer)
    def read(self, size: int = -1) -> bytes:
        with self._lock:
            while True:
                if self._failed is not None:
                    raise _ProducerFailed(f"export failed: {type(self._failed).__name__}")
                if self._finished or (size >= 0 and len(self._buffer) >= size):
                    break
                self._lock.wait()
            if size < 0 or size > len(self._buffer):
                size = len(self._buffer)
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._lock.notify_all()
            return chunk

    def readinto(self, target: Any) -> int:
        chunk = self.read(len(target))
        target[: len(chunk)] = chunk
        return len(chunk)
