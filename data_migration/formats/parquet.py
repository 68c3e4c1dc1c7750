"""Parquet: Arrow types kept exactly (decimals stay decimals, timestamps keep their unit and zone)."""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from data_migration.formats.base import FormatReader, FormatWriter

COMPRESSION = "snappy"


class ParquetWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, schema: pa.Schema):
        super().__init__(sink, schema)
        self._writer = pq.ParquetWriter(sink, schema, compression=COMPRESSION, write_statistics=True)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class ParquetReader(FormatReader):
    @staticmethod
    def read(source: BinaryIO) -> pa.Table:
        return pq.read_table(source)
