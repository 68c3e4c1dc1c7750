"""JSON Lines: one JSON object per row, keys in column order, UTF-8 without escaping.

Exact values rather than JSON numbers where a JSON reader would change them: decimals are
strings of their exact text ("12.10"), NaN and infinities are the strings "NaN", "Infinity",
"-Infinity", binary is upper-case hex. Dates, times and timestamps are ISO 8601 strings
(with the offset when the timestamp has a zone). NULL is null.
"""

from __future__ import annotations

import json
import math
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.json as pajson

from data_migration.formats.base import FormatReader, FormatWriter, binary_hex, decimal_text


def _float_value(value: float | None) -> Any:
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _column_values(array: pa.Array) -> list[Any]:
    arrow_type = array.type
    if pa.types.is_decimal(arrow_type):
        return decimal_text(array).to_pylist()
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return binary_hex(array).to_pylist()
    if pa.types.is_floating(arrow_type):
        return [_float_value(v) for v in array.to_pylist()]
    if pa.types.is_temporal(arrow_type):
        return [None if v is None else v.isoformat() for v in array.to_pylist()]
    return array.to_pylist()


class JsonLinesWriter(FormatWriter):
    def write_batch(self, batch: pa.RecordBatch) -> None:
        names = batch.schema.names
        columns = [_column_values(column) for column in batch.columns]
        dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
        lines = [dumps(dict(zip(names, row))) for row in zip(*columns)]
        if lines:
            self.sink.write(("\n".join(lines) + "\n").encode("utf-8"))

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
