"""CSV (RFC 4180): a header row, every string quoted, NULL an empty unquoted field.

So NULL and '' stay distinguishable: `,,` is NULL and `,"",` is the empty string. Decimals are
written as exact fixed-point text, binary as upper-case hex, times and timestamps with the
fractional digits of the export's unit, six or nine (zoned ones in UTC, ending in Z). Text is
written exactly; with escape_formulas (csv_escape_formulas: true), text cells that start with
= + - @ tab CR or NUL get a leading ' so that a spreadsheet shows them, not runs them.
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from data_migration.files.formats.base import (
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
        (pa.types.is_decimal(arrow_type) and arrow_type.scale != 0)  # NUMBER(p,0): Arrow writes its digits
        or is_time_or_timestamp(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_binary_view(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _text_type(arrow_type: pa.DataType) -> pa.DataType:
    return pa.string() if _needs_text(arrow_type) else arrow_type


def _csv_ready(array: pa.Array) -> pa.Array:
    if pa.types.is_decimal(array.type) and array.type.scale != 0:
        return decimal_text(array)
    if is_time_or_timestamp(array.type):
        return temporal_text(array, " ", "Z")
    if pa.types.is_string_view(array.type):
        return array.cast(pa.string())
    if _needs_text(array.type):
        return binary_hex(array)
    return array


# First characters of cells a spreadsheet would run as a formula (OWASP ASVS V1.2.10, plus CR
# and NUL). All ASCII, so comparing a cell's first byte is exact in UTF-8.
_FORMULA_START = [character.encode() for character in "=+-@\t\r\x00"]


def escape_formulas(array: pa.Array) -> pa.Array:
    """Prefix ' to text cells that a spreadsheet would take for a formula."""
    binary = pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary()
    first = pc.binary_slice(array.cast(binary), 0, 1)  # zero-copy cast; a one-byte slice each
    risky = pc.fill_null(pc.is_in(first, value_set=pa.array(_FORMULA_START, binary)), False)
    if not pc.any(risky).as_py():
        return array
    quote, empty = pa.scalar("'", array.type), pa.scalar("", array.type)
    return pc.if_else(risky, pc.binary_join_element_wise(quote, array, empty), array)


class CsvEncoder:
    """One batch's CSV records (no header): each batch encodes on its own, on any thread."""

    def __init__(self, schema: pa.Schema, escape_formulas: bool = False):
        # Only columns that are text in Snowflake: a NUMBER of -2 is a number, not a formula.
        self._escape = [
            escape_formulas
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type))
            for f in schema
        ]
        self.schema = pa.schema([pa.field(f.name, _text_type(f.type)) for f in schema])
        self._options = pacsv.WriteOptions(include_header=False, quoting_style="needed")

    def header(self) -> pa.Buffer:
        return self._encoded(self.schema.empty_table(), include_header=True)

    def __call__(self, batch: pa.RecordBatch) -> pa.Buffer:
        columns = [_csv_ready(column) for column in batch.columns]
        columns = [escape_formulas(c) if escape else c for c, escape in zip(columns, self._escape, strict=True)]
        return self._encoded(pa.RecordBatch.from_arrays(columns, schema=self.schema))

    def _encoded(self, data: pa.RecordBatch | pa.Table, include_header: bool = False) -> pa.Buffer:
        out = pa.BufferOutputStream()
        options = pacsv.WriteOptions(include_header=True, quoting_style="needed") if include_header else self._options
        pacsv.write_csv(data, out, write_options=options)
        return out.getvalue()


class CsvWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, schema: pa.Schema, escape_formulas: bool = False):
        super().__init__(sink, schema)
        self._encode = CsvEncoder(schema, escape_formulas)
        # The header is written now, so an empty result is still a valid CSV file.
        self.sink.write(self._encode.header())

    @classmethod
    def batch_encoder(cls, schema: pa.Schema, escape_formulas: bool = False) -> CsvEncoder:
        return CsvEncoder(schema, escape_formulas)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self.sink.write(self._encode(batch))

    def close(self) -> None:
        pass


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
