"""Where an export's bytes land: one object at its key, or numbered parts and a manifest.

A single-file export is one object at `s3_path`, written all-or-nothing by the store.

A split export (max_rows_per_file or max_file_size_mb set) writes its parts under the prefix
`s3_path` minus its extension, each run in a folder of its own, and commits by writing the
manifest last:

    exports/lineitem/data.parquet  ->  exports/lineitem/data/manifest.json
                                       exports/lineitem/data/<generation>/data-00000.parquet
                                       exports/lineitem/data/<generation>/data-00001.parquet

The manifest lists every part with its row count, size and sha256; readers trust only what it
lists. It is written with a conditional write against the version this run read when it began, so
of two concurrent runs of one export exactly one commits and the other fails. A failed run never
touches the current manifest or the parts it lists, so the previous export stays readable. After
a commit, parts of older generations and unfinished uploads of older runs are removed (best
effort: without list or delete permission they are left for the bucket's lifecycle rules).

An incremental export (exports/increments.py) uses the same layout and the same commit, building on the
manifest it read when it began (`Base`): the new manifest lists the earlier parts, which stay in
their generations' folders, plus this run's, and carries the cursor's new mark; cleanup removes
only files no manifest lists any more.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa

from data_migration.config.paths import split_prefix
from data_migration.files import pipeline
from data_migration.files.commit import (
    MANIFEST_FORMAT,
    Base,
    FilePart,
    WriteResult,
    abandon,
    begin_generation,
    commit_parts,
    manifest_key,
)
from data_migration.files.formats import Format, gzip_writer
from data_migration.files.storage import ObjectStore, Sink, StorageError

# Batches are cut to this many rows (zero-copy) when the format encodes batch by batch, so that
# the encoding threads share a large batch, and when a size limit applies, so that a part
# overshoots its limit by at most one such slice.
_SLICE_ROWS = 65_536
_EXTENSIONS = {"parquet": "parquet", "csv": "csv", "json": "jsonl"}


@dataclass(frozen=True)
class Split:
    """Limits per part; an export with a Split is written as parts and a manifest."""

    max_rows: int | None = None
    max_bytes: int | None = None

    @classmethod
    def from_metadata(cls, value: Any) -> Split | None:
        return cls(**value) if value else None


class _Part:
    """One open output file: the store's write context, the sink and the format writer on it."""

    def __init__(self, store: ObjectStore, key: str, fmt: Format, schema: pa.Schema, options: dict, gzip: bool):
        self.key = key
        self.rows = 0
        self._context: AbstractContextManager[Sink] = store.open_write(
            key, "application/gzip" if gzip else fmt.content_type
        )
        self.sink = self._context.__enter__()
        try:
            self._gzip = gzip_writer(self.sink) if gzip else None
            self.writer = fmt.writer(self._gzip or self.sink, schema, **options)
        except BaseException as error:
            self._context.__exit__(type(error), error, error.__traceback__)
            raise

    def write(self, batch: pa.RecordBatch, encoded: Any = None) -> None:
        """Write `batch`, or the bytes the format's batch encoder already made of it."""
        if encoded is None:
            self.writer.write_batch(batch)
        else:
            self.writer.write_encoded(encoded)
        self.rows += batch.num_rows

    def commit(self) -> FilePart:
        try:
            self.writer.close()
            if self._gzip is not None:
                self._gzip.close()  # writes the gzip trailer; the sink stays open for the store
        except BaseException as error:
            self.discard(error)
            raise
        self._context.__exit__(None, None, None)
        stored = self.sink.stored
        assert stored is not None
        return FilePart(self.key, stored.uri, self.rows, stored.size, stored.sha256, stored.checksum)

    def discard(self, error: BaseException) -> None:
        self.writer.abandon()
        if self._gzip is not None:
            self._gzip.fileobj = None  # type: ignore[assignment]  # no trailer on a failed file
        self._context.__exit__(type(error), error, error.__traceback__)


def write_export(
    store: ObjectStore,
    key: str,
    fmt: Format,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    options: dict[str, Any] | None = None,
    gzip: bool = False,
    split: Split | None = None,
    describe: Callable[[], dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    base: Base | None = None,
) -> WriteResult:
    """Stream `batches` into `key` (or into parts and a manifest) and return what was committed.

    `describe` supplies extra manifest fields (export name, run id, columns) once the data is in.
    `base` (split only) is the manifest this write adds to; without it the manifest current when
    the write begins is replaced by one listing only this run's parts.
    `progress` is called after each batch with the rows and bytes written so far.

    The source is read ahead on a thread of its own and, for formats that encode batch by batch,
    encoded ahead on a small pool (pipeline.py); the output is the same as writing one by one.
    """
    options = dict(options or {})
    progress = progress or _no_progress
    encoder = fmt.writer.batch_encoder(schema, **options)
    # Cut into slices for the pool to share (and, with a size limit, for parts to end near it).
    sliced = encoder is not None or (split is not None and split.max_bytes is not None)
    with closing(pipeline.ahead(_slices(batches) if sliced else batches, encoder)) as stream:
        if split is not None:
            return _write_split(store, key, fmt, schema, stream, options, gzip, split, describe, progress, base)
        part = _Part(store, key, fmt, schema, options, gzip)
        try:
            for batch, encoded in stream:
                part.write(batch, encoded)
                progress(part.rows, part.sink.size)
        except BaseException as error:
            part.discard(error)
            raise
    written = part.commit()
    stale = part.sink.stored.stale_uploads_removed if part.sink.stored else 0
    return WriteResult(written.uri, written.rows, written.size, written.sha256, (written,), stale)


def _no_progress(rows: int, written_bytes: int) -> None:
    pass


def _write_split(
    store: ObjectStore,
    key: str,
    fmt: Format,
    schema: pa.Schema,
    stream: Iterator[tuple[pa.RecordBatch, Any]],
    options: dict[str, Any],
    gzip: bool,
    split: Split,
    describe: Callable[[], dict[str, Any]] | None,
    progress: Callable[[int, int], None],
    base: Base | None,
) -> WriteResult:
    prefix = split_prefix(key)
    manifest_at = manifest_key(key)
    base, started, generation = begin_generation(store, key, base)
    extension = _EXTENSIONS[fmt.name] + (".gz" if gzip else "")
    done: list[FilePart] = []
    rows_done = bytes_done = 0  # of the parts in `done`, for progress
    current: _Part | None = None

    def open_next() -> _Part:
        return _Part(store, f"{prefix}/{generation}/data-{len(done):05d}.{extension}", fmt, schema, options, gzip)

    try:
        for batch, encoded in stream:
            offset = 0
            while offset < batch.num_rows:
                current = current or open_next()
                take = batch.num_rows - offset
                if split.max_rows is not None:
                    take = min(take, split.max_rows - current.rows)
                if take == batch.num_rows:
                    current.write(batch, encoded)
                else:  # the batch straddles a part boundary: encode its two sides afresh
                    current.write(batch.slice(offset, take))
                offset += take
                progress(rows_done + current.rows, bytes_done + current.sink.size)
                full_rows = split.max_rows is not None and current.rows >= split.max_rows
                full_bytes = split.max_bytes is not None and current.sink.size >= split.max_bytes
                if full_rows or full_bytes:
                    finished, current = current, None  # a failed commit discards itself
                    done.append(finished.commit())
                    rows_done, bytes_done = rows_done + done[-1].rows, bytes_done + done[-1].size
        if current is not None or not done:  # an empty result still gets one file with the schema
            finished, current = current or open_next(), None
            done.append(finished.commit())
    except BaseException as error:
        if current is not None:
            current.discard(error)
        abandon(store, manifest_at, base, done, error)
        raise
    compression = "gzip" if gzip else options.get("compression")
    return commit_parts(store, key, base, generation, started, done, fmt.name, compression, describe)


def _slices(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if batch.num_rows <= _SLICE_ROWS:
            yield batch
            continue
        for offset in range(0, batch.num_rows, _SLICE_ROWS):
            yield batch.slice(offset, _SLICE_ROWS)


# Reading ---------------------------------------------------------------------------------------


class ManifestError(StorageError):
    """A manifest is missing, unparseable, or disagrees with the parts it lists."""


@dataclass(frozen=True)
class Manifest:
    uri: str
    sha256: str
    size: int  # of the data parts
    rows: int
    parts: tuple[FilePart, ...]
    content: dict[str, Any] = field(default_factory=dict)


def read_manifest(store: ObjectStore, key: str) -> Manifest:
    manifest, _ = read_committed(store, key)
    if manifest is None:
        raise ManifestError(f"{store.uri(manifest_key(key))}: no manifest: the export has not committed a split output")
    return manifest


def read_committed(store: ObjectStore, key: str) -> tuple[Manifest | None, str | None]:
    """The current manifest and its version (for a conditional write on it); (None, None) when
    the export has committed none. Raises ManifestError when it is not a valid manifest."""
    at = manifest_key(key)
    found = store.read_versioned(at)
    if found is None:
        return None, None
    return _parsed_manifest(store, key, found[0]), found[1]


def _parsed_manifest(store: ObjectStore, key: str, body: bytes) -> Manifest:
    at = manifest_key(key)
    try:
        content = json.loads(body)
        if content.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {content.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        prefix = split_prefix(key)
        parts = tuple(
            FilePart(
                key=f"{prefix}/{entry['path']}",
                uri=store.uri(f"{prefix}/{entry['path']}"),
                rows=int(entry["rows"]),
                size=int(entry["size_bytes"]),
                sha256=entry.get("sha256"),
                checksum=entry.get("crc32"),
            )
            for entry in content["files"]
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ManifestError(f"{store.uri(at)}: not a valid manifest: {error}") from error
    for part in parts:
        if posixpath.normpath(part.key) != part.key or not part.key.startswith(f"{prefix}/"):
            raise ManifestError(f"{store.uri(at)}: lists {part.key!r}, outside the export's folder")
    return Manifest(
        uri=store.uri(at),
        sha256=hashlib.sha256(body).hexdigest(),
        size=sum(part.size for part in parts),
        rows=int(content.get("row_count", -1)),
        parts=parts,
        content=content,
    )


def export_files(store: ObjectStore, key: str, split: Split | None) -> list[FilePart] | None:
    """The files that make up an export as committed: its manifest's parts, or None for one object."""
    return list(read_manifest(store, key).parts) if split else None


def verified_bytes(source: BinaryIO, part: FilePart, chunk: int = 8 * 1024 * 1024) -> None:
    """Raise ManifestError unless `source` has exactly the size and sha256 the manifest lists (the
    size alone for a file it lists without a sha256: one Snowflake unloaded)."""
    digest = hashlib.sha256()
    size = 0
    while data := source.read(chunk):
        digest.update(data)
        size += len(data)
    if size != part.size or (part.sha256 is not None and digest.hexdigest() != part.sha256):
        raise ManifestError(
            f"{part.uri} is {size} bytes with sha256 {digest.hexdigest()}, "
            f"but the manifest lists {part.size} bytes with sha256 {part.sha256}"
        )
    source.seek(0)
