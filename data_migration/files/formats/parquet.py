"""Parquet: Arrow types kept exactly (decimals stay decimals, timestamps keep their unit and zone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from data_migration.files.formats.base import FormatReader, FormatWriter

COMPRESSION = "snappy"
# Rows per row group: large enough for readers to scan efficiently (DuckDB writes 122,880),
# small enough that buffering one group stays a few hundred MB at most for wide tables.
ROW_GROUP_ROWS = 250_000
_MAGIC = b"PAR1"
_FOOTER_READ = 64 * 1024


class ParquetWriter(FormatWriter):
    """Row groups of exactly `row_group_rows` (the last one shorter), whatever the batch sizes.

    Snowflake sends result chunks of a few MB each; writing each as a row group would leave
    readers many tiny groups, so batches are buffered up to one group and written together.
    """

    def __init__(
        self, sink: BinaryIO, schema: pa.Schema, compression: str = COMPRESSION, row_group_rows: int = ROW_GROUP_ROWS
    ):
        super().__init__(sink, schema)
        self._writer = pq.ParquetWriter(sink, schema, compression=compression, write_statistics=True)
        self._group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self._group_rows:
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            whole = self._pending_rows - self._pending_rows % self._group_rows
            self._writer.write_table(table.slice(0, whole), row_group_size=self._group_rows)
            rest = table.slice(whole)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows

    def abandon(self) -> None:
        self._pending = []
        # pyarrow's writer would otherwise try to write its footer when garbage-collected.
        self._writer.is_open = False

    def close(self) -> None:
        if self._pending_rows:
            self._writer.write_table(
                pa.Table.from_batches(self._pending, schema=self.schema), row_group_size=self._group_rows
            )
        self._pending = []
        self._writer.close()


class ParquetReader(FormatReader):
    @staticmethod
    def read(source: BinaryIO) -> pa.Table:
        return pq.read_table(source)

    @staticmethod
    def rows_from_metadata(read_suffix: Callable[[int], tuple[int, bytes]]) -> int | None:
        return ParquetReader.footer(read_suffix).num_rows

    @staticmethod
    def footer(read_suffix: Callable[[int], tuple[int, bytes]]) -> pq.FileMetaData:
        """The file's footer (its row count and schema): the file ends in <footer><4-byte
        length>PAR1, so one read of the last 64 KiB holds it in most files, and a second read of
        exactly its length otherwise."""
        size, tail = read_suffix(_FOOTER_READ)
        if len(tail) < 12 or tail[-4:] != _MAGIC or (size == len(tail) and tail[:4] != _MAGIC):
            raise ValueError("not a Parquet file: it does not end with PAR1")
        needed = int.from_bytes(tail[-8:-4], "little") + 8
        if needed + 4 > size:
            raise ValueError(f"the footer claims {needed - 8} bytes, more than the file's {size}")
        if needed > len(tail):
            size, tail = read_suffix(needed)
        # Only the footer is parsed: the offsets it holds are not followed.
        return pq.read_metadata(pa.BufferReader(_MAGIC + tail[-needed:]))

    @staticmethod
    def count_rows(source: BinaryIO) -> int:
        parquet = pq.ParquetFile(source)
        rows = 0
        for index in range(parquet.metadata.num_row_groups):  # decodes every page
            rows += parquet.read_row_group(index).num_rows
        if rows != parquet.metadata.num_rows:
            raise ValueError(f"row groups hold {rows} rows but the footer says {parquet.metadata.num_rows}")
        return rows
