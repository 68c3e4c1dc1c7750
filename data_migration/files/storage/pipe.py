"""Byte plumbing between a format writer and the S3 upload: the bounded pipe from the writing
thread to the uploading thread, and the CRC32 tee that computes what S3 will report."""

from __future__ import annotations

import base64
import io
import threading
import zlib
from typing import Any

from data_migration.files.storage.base import StorageError


class Crc32Tee(io.RawIOBase):
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


class ProducerFailed(Exception):
    """Raised to the uploading thread when the export failed before the end of the data."""


class Pipe(io.RawIOBase):
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
                    raise ProducerFailed(f"export failed: {type(self._failed).__name__}")
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
