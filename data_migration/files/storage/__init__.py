"""Where export files go: an S3 bucket, or a local folder standing in for one.

- base.py: the ObjectStore interface, Sink, StoredObject and the storage errors;
- local.py: the local folder (the embedded default);
- s3.py: the S3 bucket (streamed multipart upload, verification, conditional writes, cleanup);
- pipe.py: the bounded pipe and the CRC32 tee between a writer and an upload.

Both stores write an object all-or-nothing: readers see the previous object or the complete new
one, never a partial one. S3 guarantees that for a single PutObject or multipart upload, so the
S3 store streams into one upload and aborts it on any failure; the local store writes a hidden
temporary file and renames it into place.
"""

from __future__ import annotations

from data_migration.files.storage.base import (
    ConcurrentWriteError,
    ObjectStore,
    Sink,
    StorageError,
    StoredObject,
)
from data_migration.files.storage.local import LocalObjectStore
from data_migration.files.storage.s3 import S3ObjectStore

__all__ = [
    "ConcurrentWriteError",
    "LocalObjectStore",
    "ObjectStore",
    "S3ObjectStore",
    "Sink",
    "StorageError",
    "StoredObject",
]
