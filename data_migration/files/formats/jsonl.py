"""JSON Lines: one JSON object per row, keys in column order, UTF-8 without escaping.

Exact values rather than JSON numbers where a JSON reader would change them: integers (also
NUMBER(p,0) beyond int64, a decimal of scale 0) are numbers, other decimals are
strings of their exact text ("12.10") or, with decimals="number" (json_decimals: number), JSON
numbers with that same exact text (12.10) for readers that expect numbers. NaN and infinities
are the strings "NaN", "Infinity", "-Infinity", binary is upper-case hex. Dates, times and
timestamps are ISO 8601 strings, times and timestamps with the fractional digits of the
export's unit (six, or nine with timestamp_unit: ns), zoned timestamps in UTC with "+00:00"
(2024-03-10T02:30:00.000000+00:00). NULL is null.
"""

from __future__ import annotations

import json
import math
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from data_migration.files.formats.base import (
    FormatReader,
    FormatWriter,
    binary_hex,
    decimal_text,
    is_time_or_timestamp,
    temporal_text,
)


def _float_text(array: pa.Array) -> pa.Array:
    """JSON text of a float column, in Arrow: the shortest text that reads back as the same double
    (as Python's repr), with ".0" kept on integral values so that readers still see a float, and
    NaN and the infinities as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers)."""
    text = pc.cast(array, pa.large_string())
    integral = pc.invert(pc.match_substring_regex(text, r"[.eEn]"))  # n: nan, inf
    text = pc.if_else(integral, pc.binary_join_element_wise(text, _text(".0"), _text("")), text)
    text = pc.if_else(pc.is_nan(array), _text('"NaN"'), text)
    text = pc.if_else(pc.equal(array, pa.scalar(math.inf, array.type)), _text('"Infinity"'), text)
    return pc.if_else(pc.equal(array, pa.scalar(-math.inf, array.type)), _text('"-Infinity"'), text)


def _column_values(array: pa.Array) -> list[Any]:
    arrow_type = array.type
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return binary_hex(array).to_pylist()
    if pa.types.is_temporal(arrow_type):
        return [None if v is None else v.isoformat() for v in array.to_pylist()]
    return array.to_pylist()


_CONTROL = r"[\x00-\x1f]"
_SPECIAL = r'[\\"\x00-\x1f]'  # what a JSON string literal must escape


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _quoted(text: pa.Array, plain: bool = False) -> pa.Array:
    """JSON string literals for a string array, as json.dumps(ensure_ascii=False) writes them.
    `plain`: the caller's own text (dates, numbers) that never holds a character to escape."""
    if not plain and pc.any(pc.match_substring_regex(text, _SPECIAL)).as_py():
        escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
        control = pc.fill_null(pc.match_substring_regex(text, _CONTROL), False)
        if pc.any(control).as_py():  # rare: \n, \t, \u0000 ... take json's own escapes for those cells
            exact = [json.dumps(v, ensure_ascii=False)[1:-1] for v in text.filter(control).to_pylist()]
            escaped = pc.replace_with_mask(escaped, control, pa.array(exact, escaped.type))
        text = escaped
    return pc.binary_join_element_wise(_text('"'), text, _text('"'), _text(""))


def _encoded(array: pa.Array, decimals: str = "string") -> pa.Array:
    """Each cell's JSON text (large_string), with NULL as `null`. Vectorised where Arrow's text
    equals json's; binary (hex) goes through Python."""
    arrow_type = array.type
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        text = pc.cast(array, pa.large_string())
    elif pa.types.is_decimal(arrow_type) and arrow_type.scale == 0:  # NUMBER(p,0) beyond int64: digits
        text = decimal_text(array).cast(pa.large_string())
    elif pa.types.is_decimal(arrow_type):
        exact = decimal_text(array).cast(pa.large_string())
        text = exact if decimals == "number" else _quoted(exact, plain=True)
    elif pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        text = _quoted(array.cast(pa.large_string()))
    elif pa.types.is_date(arrow_type):
        text = _quoted(pc.cast(array, pa.large_string()), plain=True)
    elif is_time_or_timestamp(arrow_type):
        text = _quoted(temporal_text(array, "T", "+00:00").cast(pa.large_string()), plain=True)
    elif pa.types.is_floating(arrow_type):
        text = _float_text(array)
    elif pa.types.is_null(arrow_type):
        return pa.array(["null"] * len(array), pa.large_string())
    else:
        dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
        text = pa.array([dumps(v) for v in _column_values(array)], pa.large_string())
    return pc.fill_null(text, "null")


class JsonLinesEncoder:
    """One batch's lines, built column by column in Arrow: each batch encodes on its own, on any
    thread."""

    def __init__(self, schema: pa.Schema, decimals: str = "string"):
        if decimals not in ("string", "number"):
            raise ValueError(f"decimals must be 'string' or 'number', not {decimals!r}")
        self._decimals = decimals
        names = [json.dumps(name, ensure_ascii=False) for name in schema.names]
        # The text between values: {"A":  ,"B":  ...  }\n
        self._pieces = ["{" + names[0] + ":"] + ["," + name + ":" for name in names[1:]] if names else ["{"]

    def __call__(self, batch: pa.RecordBatch) -> bytes | memoryview:
        if batch.num_rows == 0:
            return b""
        if batch.num_columns == 0:
            return b"{}\n" * batch.num_rows
        parts: list[Any] = []
        for piece, column in zip(self._pieces, batch.columns, strict=True):
            parts += [_text(piece), _encoded(column, self._decimals)]
        lines = pc.binary_join_element_wise(*parts, _text("}\n"), _text(""))
        # The lines lie end to end in the array's data buffer: hand it on as it is.
        offsets = memoryview(lines.buffers()[1]).cast("q")  # int64: large_string
        start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
        return memoryview(lines.buffers()[2])[start:end]


class JsonLinesWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, schema: pa.Schema, decimals: str = "string"):
        super().__init__(sink, schema)
        self._encode = JsonLinesEncoder(schema, decimals)

    @classmethod
    def batch_encoder(cls, schema: pa.Schema, decimals: str = "string") -> JsonLinesEncoder:
        return JsonLinesEncoder(schema, decimals)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self.sink.write(self._encode(batch))

    def close(self) -> None:
        pass


class JsonLinesReader(FormatReader):
    @staticmethod
    def count_rows(source: BinaryIO) -> int:
        rows = 0
        for number, line in enumerate(source, start=1):
            if not line.endswith(b"\n"):
                raise ValueError(f"line {number} is not terminated: the file is cut short")
            if not isinstance(json.loads(line), dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows += 1
        return rows

    @staticmethod
    def read(source: BinaryIO) -> pa.Table:
        data = source.read()
        if not data.strip():
            return pa.table({})
        return pajson.read_json(pa.BufferReader(data))
