"""Which Arrow types each table format takes, checked before anything is written.

`iceberg_write_schema` and `delta_write_schema` return the schema the Parquet files must be
written with: the input's types where the format takes them as they are, lossless widenings where
it takes a wider one (uint32 becomes int64, time32 and timestamps in s or ms become microseconds,
float16 becomes float32, dictionaries their value type). Every other column is refused, all of
them in one `TableTypeError` that names each column, its type, why, and what to change.

The rules (Iceberg format version 2; Delta as delta-rs 1.6 writes it):

| Arrow | Iceberg v2 | Delta |
|---|---|---|
| timestamp[ns] | refused: v2 keeps microseconds | refused: delta-rs truncates, or needs `timestampNanos` |
| timestamp with a zone other than UTC | refused | refused |
| timestamp without zone | `timestamp` | `timestamp_ntz` (readers need the timestampNtz feature, protocol 3/7) |
| time64[us], time32 | `time` | refused: Delta has no TIME type |
| time64[ns] | refused | refused |
| decimal128(p ≤ 38) | `decimal(p, s)` | `decimal(p, s)` |
| decimal256 | decimal128 within 38 digits, else refused | the same |
| uint8 / uint16 / uint32 | widened to int16 / int32 / int64 | widened (delta-rs makes uint8 a signed byte) |
| uint64 | refused: no integer type holds it | refused |
| null | refused: a column of only NULLs has no type | refused (delta-rs would write `void`) |
| list, struct, map | refused: this layer writes flat tables | refused |

Delta also refuses column names that need column mapping (` ,;{}()\\n\\t=`) and two names that
differ only in case (Delta resolves names case-insensitively).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

ICEBERG = "Iceberg v2"
DELTA = "Delta"
UTC_NAMES = frozenset({"UTC", "+00:00", "Etc/UTC", "Z"})  # pyiceberg's UTC_ALIASES
_TIMESTAMP_FIX = "set timestamp_unit: us on the export (the default)"
_NULL_FIX = "give it a type in the query, e.g. NULL::VARCHAR AS <column>"
_NESTED_FIX = "select it as JSON text (the exports write VARIANT, OBJECT and ARRAY as strings)"
_DELTA_BAD_NAME = set(" ,;{}()\n\t=")


@dataclass(frozen=True)
class ColumnProblem:
    column: str
    arrow_type: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.column} ({self.arrow_type}): {self.reason}; {self.fix}"


class TableTypeError(ValueError):
    """Columns a table format cannot hold: every one of them, with what to change."""

    def __init__(self, table_format: str, problems: list[ColumnProblem]):
        self.table_format = table_format
        self.problems = tuple(problems)
        lines = "\n".join(f"- {problem}" for problem in problems)
        super().__init__(f"cannot write {len(problems)} column(s) to a {table_format} table:\n{lines}")


# A rule maps one Arrow type to the type the files are written with, or to (reason, fix).
_Rule = Callable[[pa.DataType], "pa.DataType | tuple[str, str]"]


def iceberg_write_schema(schema: pa.Schema) -> pa.Schema:
    """The schema an Iceberg v2 table's Parquet files are written with; TableTypeError if any
    column has no Iceberg v2 type."""
    return _map(schema, ICEBERG, _iceberg_type, _no_name_rule)


def delta_write_schema(schema: pa.Schema) -> pa.Schema:
    """The schema a Delta table's Parquet files are written with; TableTypeError if any column
    has no Delta type or a name Delta cannot take without column mapping."""
    return _map(schema, DELTA, _delta_type, _delta_names)


def conform(batch: pa.RecordBatch, write_schema: pa.Schema) -> pa.RecordBatch:
    """`batch` in the write schema (checked casts only: a widening never loses a value)."""
    return batch if batch.schema == write_schema else batch.cast(write_schema, safe=True)


def _map(
    schema: pa.Schema, table_format: str, rule: _Rule, names: Callable[[pa.Schema], list[ColumnProblem]]
) -> pa.Schema:
    problems = names(schema)
    fields = []
    for field in schema:
        mapped = rule(field.type)
        if isinstance(mapped, tuple):
            problems.append(ColumnProblem(field.name, str(field.type), *mapped))
        else:
            fields.append(field.with_type(mapped))
    if problems:
        raise TableTypeError(table_format, problems)
    return pa.schema(fields, metadata=schema.metadata)


def _no_name_rule(schema: pa.Schema) -> list[ColumnProblem]:
    return []


def _delta_names(schema: pa.Schema) -> list[ColumnProblem]:
    problems = []
    seen: dict[str, str] = {}
    for field in schema:
        if set(field.name) & _DELTA_BAD_NAME:
            problems.append(
                ColumnProblem(
                    field.name,
                    str(field.type),
                    "Delta column names cannot hold spaces or any of ,;{}()=, tab or newline without column mapping",
                    "alias the column in the query (AS <name>)",
                )
            )
        if (other := seen.setdefault(field.name.lower(), field.name)) != field.name:
            problems.append(
                ColumnProblem(
                    field.name,
                    str(field.type),
                    f"Delta resolves names case-insensitively, and {other!r} is the same name",
                    "alias one of the two columns in the query",
                )
            )
    return problems


def _common(t: pa.DataType) -> pa.DataType | tuple[str, str] | None:
    """The rules both formats share; None where the format's own rule decides."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if pa.types.is_null(t):
        return ("a column of only NULLs has no type a table can hold", _NULL_FIX)
    if pa.types.is_nested(t):
        return ("this layer writes flat tables", _NESTED_FIX)
    if pa.types.is_uint64(t):
        return ("no signed integer type holds every uint64", "cast it in the query to NUMBER(20,0) (a decimal)")
    if pa.types.is_unsigned_integer(t):
        return {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}[t.bit_width]
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_decimal(t):
        if t.precision > 38:
            return (
                "decimals hold at most 38 digits",
                "cast it in the query to NUMBER(38, s), or to VARCHAR to keep every digit",
            )
        return pa.decimal128(t.precision, t.scale)
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_timestamp(t):
        if t.unit == "ns":
            return ("timestamps are stored in microseconds, and this column has nanoseconds", _TIMESTAMP_FIX)
        if t.tz is not None and t.tz not in UTC_NAMES:
            return (
                f"zoned timestamps must be in UTC, not {t.tz}",
                "cast it to timestamp[us, tz=UTC] (the instants stay the same; only the zone label goes)",
            )
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_time64(t) and t.unit == "ns":
        return ("times are stored in microseconds, and this column has nanoseconds", _TIMESTAMP_FIX)
    return None


def _iceberg_type(t: pa.DataType) -> pa.DataType | tuple[str, str]:
    common = _common(t)
    if isinstance(common, pa.DataType) and common != t:
        return _iceberg_type(common)  # a dictionary's value type goes through the rules too
    if common is not None:
        return common
    if pa.types.is_time32(t):
        return pa.time64("us")
    if (
        pa.types.is_boolean(t)
        or pa.types.is_signed_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_date32(t)
        or pa.types.is_time64(t)
    ):
        return t
    return (f"Iceberg v2 has no type for {t}", "cast it in the query to VARCHAR or a NUMBER")


def _delta_type(t: pa.DataType) -> pa.DataType | tuple[str, str]:
    common = _common(t)
    if isinstance(common, pa.DataType) and common != t:
        return _delta_type(common)
    if common is not None:
        return common
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        return (
            "Delta has no TIME type",
            "cast it in the query to VARCHAR, e.g. TO_VARCHAR(<column>, 'HH24:MI:SS.FF6') AS <column>",
        )
    if pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if (
        pa.types.is_boolean(t)
        or pa.types.is_signed_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_date32(t)
    ):
        return t
    return (f"Delta has no type for {t}", "cast it in the query to VARCHAR or a NUMBER")
