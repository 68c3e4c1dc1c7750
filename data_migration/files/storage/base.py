"""The object store interface: what files/layout.py and the IO managers write through, and its errors.

Every store writes an object all-or-nothing: readers see the previous object or the complete new
one, never a partial one. `Sink` is what a format writer writes to; it counts and hashes the bytes
on their way to the store.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagster import ConfigurableResource, InitResourceContext

MiB = 1024 * 1024
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
    # The CRC32 the store keeps for the object (base64, as S3 reports it), checked against the
    # bytes written; None where the store keeps none (an S3-compatible store in that mode).
    checksum: str | None = None


@dataclass(frozen=True)
class ObjectStat:
    """What the store says about an object without reading it."""

    size: int
    checksum: str | None  # as in StoredObject.checksum


def crc32_text(value: int) -> str:
    """A CRC32 as S3 writes it in x-amz-checksum-crc32: four big-endian bytes, base64."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


class Sink(io.RawIOBase):
    """What a format writer writes to: counts and hashes bytes on their way to the store.

    `crc32=True` also keeps the CRC32 of the bytes, for a store that has no CRC32 of its own
    (the local folder); the S3 store's Crc32Tee computes it there, so it is not computed twice.
    """

    def __init__(self, target: Any, crc32: bool = False):
        super().__init__()
        self._target = target
        self.size = 0
        self._sha256 = hashlib.sha256()
        self.crc32: int | None = 0 if crc32 else None
        self.stored: StoredObject | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._target.write(view)
        self._sha256.update(view)
        if self.crc32 is not None:
            self.crc32 = zlib.crc32(view, self.crc32)
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

    def stat(self, key: str) -> ObjectStat | None:
        """Size and stored CRC32 of `key` (one HEAD on S3); None if there is no such object."""
        raise NotImplementedError

    def read_suffix(self, key: str, length: int) -> tuple[int, bytes]:
        """The object's size and its last `length` bytes (fewer if it is shorter): one ranged read."""
        raise NotImplementedError

    # Small objects (manifests), with a version token for compare-and-swap.
    def read_versioned(self, key: str, *, denied_is_absent: bool = True) -> tuple[bytes, str] | None:
        """The object's bytes and a token that changes whenever it is rewritten; None if absent.

        A store that cannot always tell a missing object from one it may not read (S3 without
        s3:ListBucket) takes such a one as absent, or with `denied_is_absent=False` raises."""
        raise NotImplementedError

    def put_if_unchanged(self, key: str, data: bytes, content_type: str, version: str | None) -> StoredObject:
        """Write `key` only if it is still at `version` (None: only if it does not exist).

        Raises ConcurrentWriteError when another writer got there first.
        """
        raise NotImplementedError

    def require_conditional_writes(self, folder: str) -> None:
        """Raise StorageError unless put_if_unchanged really is conditional on this store (checked
        by writing under `folder`, once per store and process where a check costs requests)."""

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
