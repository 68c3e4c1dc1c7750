"""File formats by file_type. A new format is a writer/reader pair and one line here."""

from __future__ import annotations

from data_migration.files.formats.base import Format, FormatReader, FormatWriter, decompressed, gzip_writer
from data_migration.files.formats.csv import CsvReader, CsvWriter
from data_migration.files.formats.jsonl import JsonLinesReader, JsonLinesWriter
from data_migration.files.formats.parquet import ParquetReader, ParquetWriter

FORMATS: dict[str, Format] = {
    "parquet": Format("parquet", "application/vnd.apache.parquet", ParquetWriter, ParquetReader),
    "csv": Format("csv", "text/csv; charset=utf-8", CsvWriter, CsvReader),
    "json": Format("json", "application/x-ndjson; charset=utf-8", JsonLinesWriter, JsonLinesReader),
}

__all__ = ["FORMATS", "Format", "FormatReader", "FormatWriter", "decompressed", "gzip_writer"]
