"""A local folder standing in for a bucket (the embedded default): `<root>/<key>`, written under a
hidden temporary name and renamed into place, with a lock file for conditional writes."""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from data_migration.files.storage.base import (
    ConcurrentWriteError,
    ObjectStat,
    ObjectStore,
    Sink,
    StoredObject,
    crc32_text,
)


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
                sink = Sink(handle, crc32=True)
                yield sink
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        for leftover in earlier:
            leftover.unlink(missing_ok=True)
        sink.stored = StoredObject(
            uri=self.uri(key),
            size=sink.size,
            sha256=sink.sha256,
            stale_uploads_removed=len(earlier),
            checksum=crc32_text(sink.crc32 or 0),
        )

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with open(self._path(key), "rb") as handle:
            yield handle

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectStat | None:
        # A disk keeps no checksum: compute it from the file, as S3 does on arrival.
        try:
            with open(self._path(key), "rb") as handle:
                crc, size = 0, 0
                while chunk := handle.read(8 * 1024 * 1024):
                    crc, size = zlib.crc32(chunk, crc), size + len(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return ObjectStat(size, crc32_text(crc))

    def read_suffix(self, key: str, length: int) -> tuple[int, bytes]:
        with open(self._path(key), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - length))
            return size, handle.read()

    def read_versioned(self, key: str, *, denied_is_absent: bool = True) -> tuple[bytes, str] | None:
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
            if datetime.fromtimestamp(partial.stat().st_mtime, UTC) < started_before:
                partial.unlink(missing_ok=True)
                removed += 1
        return removed
