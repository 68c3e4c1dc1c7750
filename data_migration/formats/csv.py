"""CSV (RFC 4180): a header row, every string quoted, NULL an empty unquoted field.

So NULL and '' stay distinguishable: `,,` is NULL and `,"",` is the empty string. Decimals are
written as exact fixed-point text, binary as upper-case hex, times and timestamps with exactly
nine fractional digits (zoned ones in UTC, ending in Z). Unless turned off, text cells that
start with = + - @ tab CR or NUL get a leading ' so that a spreadsheet shows them, not runs them.
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from data_migration.formats.base import (
    FormatReader,
    FormatWriter,
    binary_hex,
    decimal_text,
    is_time_or_timestamp,
    temporal_text,
)


def _needs_text(arrow_type: pa.DataType) -> bool:
    # Arrow's CSV writer cannot write binary or the *_view string types, writes decimals in
    # scientific notation and times with as many digits as their unit; these become text first.
    return (
        pa.types.is_decimal(arrow_type)
        or is_time_or_timestamp(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_binary_view(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _text_type(arrow_type: pa.DataType) -> pa.DataType:
    return pa.string() if _needs_text(arrow_type) else arrow_type


def _csv_ready(array: pa.Array) -> pa.Array:
    if pa.types.is_decimal(array.type):
        return decimal_text(array)
    if is_time_or_timestamp(array.type):
        return temporal_text(array, " ", "Z")
    if pa.types.is_string_view(array.type):
        return array.cast(pa.string())
    if _needs_text(array.type):
        return binary_hex(array)
    return array


# Cells a spreadsheet would run as a formula (OWASP ASVS V1.2.10, plus CR and NUL).
_FORMULA_START = r"^[=+\-@\t\r\x00]"


def escape_formulas(array: pa.Array) -> pa.Array:
    """Prefix ' to text cells that a spreadsheet would take for a formula."""
    risky = pc.fill_null(pc.match_substring_regex(array, _FORMULA_START), False)
    if not pc.any(risky).as_py():
        return array
    return pc.if_else(risky, pc.binary_join_element_wise("'", array, ""), array)


class CsvWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, schema: pa.Schema, escape_formulas: bool = True):
        super().__init__(sink, schema)
        # Only columns that are text in Snowflake: a NUMBER of -2 is a number, not a formula.
        self._escape = [
            escape_formulas
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type))
            for f in schema
        ]
        self._schema = pa.schema([pa.field(f.name, _text_type(f.type)) for f in schema])
        # The header is written now, so an empty result is still a valid CSV file.
        self._writer = pacsv.CSVWriter(sink, self._schema, write_options=pacsv.WriteOptions(quoting_style="needed"))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        columns = [_csv_ready(column) for column in batch.columns]
        columns = [escape_formulas(c) if escape else c for c, escape in zip(columns, self._escape, strict=True)]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


class CsvReader(FormatReader):
    @staticmethod
    def count_rows(source: BinaryIO) -> int:
        text = io.TextIOWrapper(source, encoding="utf-8", newline="")
        try:
            reader = csv.reader(text, strict=True)
            header = next(reader, None)
            if header is None:
                raise ValueError("the file is empty: not even a header row")
            rows = 0
            for record in reader:
                if len(record) != len(header):
                    raise ValueError(f"record {rows + 1} has {len(record)} fields, the header {len(header)}")
                rows += 1
            return rows
        finally:
            text.detach()

    @staticmethod
    def read(source: BinaryIO) -> pa.Table:
        return pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False),
        )
