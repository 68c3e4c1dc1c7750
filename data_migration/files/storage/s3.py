"""An S3 bucket: one streamed upload per object through boto3's managed (multipart) transfer,
aborted on any failure and verified (size and CRC32) after it commits; conditional writes for
manifests; cleanup of unfinished uploads that killed runs left behind."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from data_migration.files.storage.base import (
    ConcurrentWriteError,
    MiB,
    ObjectStat,
    ObjectStore,
    Sink,
    StorageError,
    StoredObject,
)
from data_migration.files.storage.pipe import Crc32Tee, Pipe, ProducerFailed

log = logging.getLogger(__name__)
# Endpoint and bucket -> whether its conditional writes were seen to hold, once per process.
_CONDITIONAL_WRITES: dict[tuple[str | None, str], bool] = {}
_CONDITIONAL_LOCK = threading.Lock()
PROBE_NAME = "_conditional_writes_probe"  # `_`: lake readers of a folder skip it
_READ_GRANTS = (
    "grant s3:GetObject on the export's prefix, and kms:Decrypt on the bucket's KMS key if it encrypts "
    "with SSE-KMS (see docs/iam-policy.json); check the bucket policy for a Deny"
)


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

    # One boto3 client per store, made on first use: dagster-aws builds a new session and client on
    # every get_client() (about 0.15 s), which a run of many partitions would pay for each call.
    # boto3 clients are thread-safe. `_pins`: the CRC32 to send with each upload in flight, by key.
    _shared_client: Any = PrivateAttr(default=None)
    _client_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _pins: dict[str, Crc32Tee] = PrivateAttr(default_factory=dict)
    # Keys whose read answered 403 with listing denied: taken as absent, but not known to be.
    _unconfirmed: set[str] = PrivateAttr(default_factory=set)

    def _client(self) -> Any:
        with self._client_lock:
            if self._shared_client is None:
                client = self.s3.get_client()
                _pin_full_object_crc32(client, self._pins)
                self._shared_client = client
            return self._shared_client

    @property
    def kind(self) -> str:
        return "s3"

    def describe(self) -> str:
        checksums = (
            "" if self.send_checksums else " (S3-compatible mode: no upload checksums sent; sizes still verified)"
        )
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
        client = self._client()
        # Unfinished uploads of this key begun before this write: orphans of killed runs (billed
        # until aborted), or older writers whose data must not land over newer data. Aborted
        # once this write has committed; uploads begun after it are left alone.
        earlier = self._open_uploads(client, key)
        pipe = Pipe(capacity=self.part_size_mib * MiB)
        crc = Crc32Tee(pipe, part_size=self.part_size_mib * MiB)
        with self._pinned(key, crc):
            yield from self._upload(client, key, content_type, pipe, crc, earlier)

    @contextmanager
    def _pinned(self, key: str, crc: Crc32Tee) -> Iterator[None]:
        """While `key` uploads, its committing request carries `crc` (see _pin_full_object_crc32)."""
        if not self.send_checksums:
            yield
            return
        with self._client_lock:
            if key in self._pins:
                raise ConcurrentWriteError(f"{self.uri(key)}: another upload of this key is in progress")
            self._pins[key] = crc
        try:
            yield
        finally:
            with self._client_lock:
                self._pins.pop(key, None)

    def _upload(
        self, client: Any, key: str, content_type: str, pipe: Pipe, crc: Crc32Tee, earlier: list[str] | None
    ) -> Iterator[Sink]:
        failure: list[BaseException] = []

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
            if failure and not isinstance(failure[0], ProducerFailed):
                # The upload broke first; the writer's error is only its echo.
                raise self._error("upload failed", key, failure[0]) from failure[0]
            raise
        pipe.finish()
        uploader.join()
        if failure:
            raise self._error("upload failed", key, failure[0]) from failure[0]
        checksum = self._verify(client, key, sink, crc)
        removed = self._abort_uploads(client, key, earlier)
        sink.stored = StoredObject(
            uri=self.uri(key), size=sink.size, sha256=sink.sha256, stale_uploads_removed=removed, checksum=checksum
        )

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

    def _verify(self, client: Any, key: str, sink: Sink, crc: Crc32Tee) -> str | None:
        """The stored object has exactly the bytes written: its size, and its CRC32 as S3 stored it.
        Returns that stored CRC32, for the asset checks to compare later with a HEAD alone.

        boto3 computes the CRC32 of what it sends and S3 checks it on arrival; comparing S3's
        stored value with the CRC32 of the bytes as the writer produced them also covers the way
        from the writer to boto3.
        """
        head = client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head["ContentLength"] != sink.size:
            raise StorageError(
                f"{self.uri(key)}: stored object is {head['ContentLength']} bytes, but {sink.size} were written"
            )
        stored = head.get("ChecksumCRC32")
        if stored is None:  # an S3-compatible store that keeps no checksums: the size must do
            return None
        expected = crc.candidates()
        if stored.split("-", 1)[0] not in expected:
            raise StorageError(
                f"{self.uri(key)}: stored object's CRC32 is {stored}, but the bytes written have "
                f"{' or '.join(sorted(expected))}"
            )
        return stored

    def _error(self, what: str, key: str, cause: BaseException) -> StorageError:
        code = _code(cause)
        detail = f"{type(cause).__name__}" + (f" {code}" if code else "") + f": {cause}"
        if code == "NoSuchBucket":
            detail = f"bucket {self.bucket!r} does not exist ({type(cause).__name__})"
        return StorageError(f"{self.uri(key)}: {what}: {detail}")

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        client = self._client()
        with tempfile.SpooledTemporaryFile(max_size=64 * MiB) as buffer:
            client.download_fileobj(self.bucket, key, buffer)
            buffer.seek(0)
            yield buffer  # type: ignore[misc]

    def read_versioned(self, key: str, *, denied_is_absent: bool = True) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client().get_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            # botocore checks the body against the stored CRC32 as it reads (FlexibleChecksumError).
            return response["Body"].read(), response["ETag"]
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):
                return None
            if _code(error) in ("403", "AccessDenied"):
                return self._denied(key, error, denied_is_absent)
            raise self._error("read failed", key, error) from error
        except BotoCoreError as error:
            raise self._error("read failed", key, error) from error

    def _denied(self, key: str, error: Exception, denied_is_absent: bool) -> None:
        """A 403 on reading `key`. Without s3:ListBucket (the writer policy's required statements
        have none), S3 answers a missing key with 403 rather than 404; with it, a 403 means the key
        exists and may not be read (no s3:GetObject, a bucket policy, or no kms:Decrypt on an
        SSE-KMS object), which must never pass for "no manifest yet". So the listing decides:
        listed, an error naming the permissions; not listed, absent. When listing is not allowed
        either, the key counts as absent (a create-only commit then fails with 412 if it exists,
        and put_if_unchanged names the permissions) unless `denied_is_absent` is False."""
        listed = self._listing(key)
        if listed is not None and key not in listed:
            return None
        if listed is None and denied_is_absent:
            self._unconfirmed.add(key)
            return None
        raise StorageError(
            f"{self.uri(key)}: {'exists, but ' if listed else ''}this identity may not read it (GetObject answered "
            f"403 AccessDenied{'' if listed else ', and listing is not allowed either'}): {_READ_GRANTS}"
        ) from error

    def _listing(self, prefix: str) -> list[str] | None:
        """Keys under `prefix`; None when listing is not allowed (no s3:ListBucket)."""
        from botocore.exceptions import ClientError

        keys: list[str] = []
        try:
            for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", [])]
        except ClientError as error:
            if _code(error) != "AccessDenied":
                raise self._error("listing failed", prefix, error) from error
            return None
        return sorted(keys)

    def put_if_unchanged(self, key: str, data: bytes, content_type: str, version: str | None) -> StoredObject:
        from botocore.exceptions import ClientError

        # S3's conditional writes: If-None-Match creates only; If-Match is compare-and-swap.
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            self._client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                **self._checksum_args(),
                **condition,
            )
        except ClientError as error:
            if _code(error) in ("PreconditionFailed", "412"):
                if version is None and key in self._unconfirmed:
                    raise StorageError(
                        f"{self.uri(key)}: exists (a create-only write answered 412), but this identity may not "
                        f"read it (GetObject answered 403 AccessDenied): {_READ_GRANTS}"
                    ) from error
                raise ConcurrentWriteError(
                    f"{self.uri(key)}: changed by another run since this run began (412 PreconditionFailed)"
                ) from error
            if version is not None and _code(error) in ("NoSuchKey", "404"):
                raise ConcurrentWriteError(f"{self.uri(key)}: deleted by another run since this run began") from error
            # 409 ConditionalRequestConflict: a conflicting write in flight; transient, retried.
            raise self._error("write failed", key, error) from error
        return StoredObject(uri=self.uri(key), size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def require_conditional_writes(self, folder: str) -> None:
        """A split, incremental or unloaded export commits by a create-only or compare-and-swap
        PutObject; some S3-compatible stores ignore If-None-Match and If-Match, and then two
        runs both commit and one's cleanup removes the other's files. So, once per endpoint,
        bucket and process: a create-only write of a small object under `folder` that exists
        must fail with 412 (the first write creates it; it is removed afterwards where the identity
        may delete)."""
        from botocore.exceptions import ClientError

        where = (self.s3.endpoint_url, self.bucket)
        with _CONDITIONAL_LOCK:
            if where not in _CONDITIONAL_WRITES:
                key = f"{folder}/{PROBE_NAME}"
                honoured = False
                for _ in range(2):
                    try:
                        self._client().put_object(Bucket=self.bucket, Key=key, Body=b"1", IfNoneMatch="*")
                    except ClientError as error:
                        if _code(error) in ("PreconditionFailed", "412"):
                            honoured = True
                            break
                        if _code(error) not in ("NotImplemented", "501"):
                            raise self._error("checking conditional writes failed", key, error) from error
                        break
                self.delete_keys([key])  # best effort: without s3:DeleteObject it stays, 1 byte
                _CONDITIONAL_WRITES[where] = honoured
        if not _CONDITIONAL_WRITES[where]:
            raise StorageError(
                f"s3://{self.bucket}: this store does not honour conditional writes (a create-only PutObject "
                "of an object that exists did not fail with 412 PreconditionFailed, as S3 answers): split, "
                "incremental and unload exports commit their manifest with one, and without it two runs could "
                "both commit and remove each other's files. Export to a single object (no max_rows_per_file, "
                "max_file_size_mb, incremental or method: unload), or use a store that supports If-None-Match "
                "and If-Match on PutObject"
            )

    def list_keys(self, prefix: str) -> list[str] | None:
        keys = self._listing(prefix)
        if keys is None:
            log.warning(f"{self.uri(prefix)}: not allowed to list (s3:ListBucket); old files are left in place")
        return keys

    def delete_keys(self, keys: list[str]) -> int:
        client = self._client()
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

        client = self._client()
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
        return self.stat(key) is not None

    def stat(self, key: str) -> ObjectStat | None:
        from botocore.exceptions import ClientError

        client = self._client()
        try:
            head = client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectStat(head["ContentLength"], head.get("ChecksumCRC32"))

    def read_suffix(self, key: str, length: int) -> tuple[int, bytes]:
        client = self._client()
        # A suffix range (the last N bytes); Content-Range says the whole object's size.
        response = client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=-{length}")
        size = int(response["ContentRange"].rsplit("/", 1)[1])
        return size, response["Body"].read()


def _pin_full_object_crc32(client: Any, pins: dict[str, Crc32Tee]) -> None:
    """Send S3 the CRC32 of the bytes as the writer produced them, for S3 to check before it
    stores the object: on the PutObject of a small object, and on CompleteMultipartUpload (a
    FULL_OBJECT checksum) of a large one. Both requests are made only after the writer finished,
    so the value is final. Bytes changed anywhere between the writer and S3 then make S3 refuse
    the object (BadDigest), instead of storing it with a checksum botocore computed from the
    changed bytes. (moto does not check it; the HEAD comparison in _verify backs it up.)
    `pins` holds the uploads in flight by key; other requests (the manifest's conditional
    PutObject) are left as they are.
    """

    def put_object(params: dict, **_: Any) -> None:
        crc = pins.get(params.get("Key", ""))
        if crc is not None:
            params["ChecksumCRC32"] = crc.whole_object()

    def complete(params: dict, **_: Any) -> None:
        crc = pins.get(params.get("Key", ""))
        if crc is not None:
            params["ChecksumCRC32"] = crc.whole_object()
            params["ChecksumType"] = "FULL_OBJECT"

    client.meta.events.register("before-parameter-build.s3.PutObject", put_object)
    client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", complete)


def _code(error: Any) -> str | None:
    # Not only ClientError has a `response`; some botocore errors carry one that is None.
    response = getattr(error, "response", None)
    return (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
