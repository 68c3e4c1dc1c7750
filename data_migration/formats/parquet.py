"""Parquet: Arrow types kept exactly (decimals stay decimals, timestamps keep their unit and zone)."""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from data_migration.formats.base import FormatReader, FormatWriter

COMPRESSION = "snappy"


class ParquetWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, schema: pa.Schema, compression: str = COMPRESSION):
        super().__init__(sink, schema)
        self._writer = pq.ParquetWriter(sink, schema, compression=compression, write_statistics=True)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
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
