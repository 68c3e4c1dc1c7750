"""A load's file on its way through a temporary internal stage, in memory that does not grow with
the file: the pieces it is PUT as.

snowflake-connector-python holds a PUT's whole stream in memory: it encrypts a stream for an S3 or
Azure stage into a `BytesIO` (storage_client.py, `SnowflakeStorageClient.encrypt`), and uploads a
GCS one in a single request (`upload_chunk` reads it all when `num_of_chunks == 1`). Measured with
benchmarks/load.py, LINEITEM at SF1 as one 217 MB object peaked at 602 MiB by PUT against 336 MiB
through the external stage. So a file of at most PIECE_BYTES is PUT as it is (its verified bytes),
and a larger one is PUT as Parquet pieces of at most about PIECE_BYTES each: its rows in order, in
batches of a size estimated from the file's bytes per row, under the file's own Arrow schema (the
same logical types, so `$1:"col"::TYPE` reads each value as it was written). Each piece's rows
are counted as it is written, and the pieces' rows must add up to the rows the manifest (or the
footer) records for the file, before anything is PUT.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow.parquet as pq

from data_migration.loads.sources import LoadError, SourceFile

MiB = 1024 * 1024
PIECE_BYTES = 64 * MiB  # a file up to this size is PUT whole; a larger one in pieces about this size
_BATCHES_PER_PIECE = 32  # a piece closes after the batch that takes it past PIECE_BYTES


@dataclass(frozen=True)
class Piece:
    """One PUT: the bytes (a seekable file positioned at 0), the rows they hold, and which of the
    file's pieces it is (1-based; a file PUT whole is its own piece 1)."""

    data: BinaryIO
    rows: int
    number: int


def pieces(source: BinaryIO, file: SourceFile, piece_bytes: int | None = None) -> Iterator[Piece]:
    """The pieces `source` (the file's verified bytes, seekable, at 0) is PUT as, one at a time:
    each is valid until the next is asked for. Raises LoadError when the file's rows differ from
    the rows recorded for it."""
    limit = PIECE_BYTES if piece_bytes is None else piece_bytes
    if file.size <= limit:
        yield Piece(source, file.rows, 1)
        return
    # Without pre-buffering: it reads a row group's column chunks at once (about 190 MiB more at
    # the peak for LINEITEM at SF1, measured); batches of about PIECE_BYTES / 32 encoded.
    parquet = pq.ParquetFile(source, pre_buffer=False)
    found = parquet.metadata.num_rows
    if found != file.rows:
        raise LoadError(f"{file.uri} holds {found} rows, but {file.rows} were recorded")
    bytes_per_row = max(1.0, file.size / max(1, found))
    batch_rows = max(1, int(limit / _BATCHES_PER_PIECE / bytes_per_row))
    written: list[int] = []
    batches = parquet.iter_batches(batch_size=batch_rows, use_threads=False)
    pending = next(batches, None)
    while pending is not None:
        with tempfile.TemporaryFile() as sink:  # on disk: the connector reads it again to PUT it
            rows = 0
            with pq.ParquetWriter(sink, parquet.schema_arrow, compression="snappy") as writer:
                while pending is not None:
                    writer.write_batch(pending)
                    rows += pending.num_rows
                    pending = next(batches, None)
                    if sink.tell() >= limit:
                        break
            written.append(rows)
            sink.seek(0)
            yield Piece(sink, rows, len(written))
    if sum(written) != file.rows:
        raise LoadError(f"{file.uri}: its pieces hold {sum(written)} rows, but {file.rows} were recorded")
