"""Parquet: Arrow types kept exactly (decimals stay decimals, timestamps keep their unit and zone)."""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from data_migration.formats.base import FormatReader, FormatWriter

COMPRESSION = "snappy"
# Rows per row group: large enough for readers to scan efficiently (DuckDB writes 122,880),
# small enough that buffering one group stays a few hundred MB at most for wide tables.
ROW_GROUP_ROWS = 250_000


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
    def count_rows(source: BinaryIO) -> int:
        parquet = pq.ParquetFile(source)
        rows = 0
        for index in range(parquet.metadata.num_row_groups):  # decodes every page
            rows += parquet.read_row_group(index).num_rows
        if rows != parquet.metadata.num_rows:
            raise ValueError(f"row groups hold {rows} rows but the footer says {parquet.metadata.num_rows}")
        return rows
