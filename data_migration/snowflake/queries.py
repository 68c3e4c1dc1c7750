"""Running SQL on Snowflake: the shared connection of a run, statements whose rows are read by
column name, and a query's result streamed as Arrow record batches.

The only module that executes SQL; it takes SQL text, never an export or a load. The connection
stays open while the batches are consumed (by the IO manager), and `ExportStream.close()` closes
it on every path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster_snowflake import SnowflakeResource

from data_migration.snowflake.tags import set_query_tag

DEFAULT_QUERY_TIMEOUT_SECONDS = 3600

_TYPE_NAMES = {
    0: "NUMBER",
    1: "FLOAT",
    2: "VARCHAR",
    3: "DATE",
    4: "TIMESTAMP_LTZ",
    5: "VARIANT",
    6: "TIMESTAMP_LTZ",
    7: "TIMESTAMP_TZ",
    8: "TIMESTAMP_NTZ",
    9: "OBJECT",
    10: "ARRAY",
    11: "BINARY",
    12: "TIME",
    13: "BOOLEAN",
    14: "GEOGRAPHY",
    15: "GEOMETRY",
    16: "VECTOR",
    17: "MAP",
    18: "FILE",
    19: "INTERVAL YEAR TO MONTH",
    20: "INTERVAL DAY TO TIME",
}


class RowCountMismatch(RuntimeError):
    """Fewer or more rows arrived than Snowflake said the result holds."""


@dataclass(frozen=True)
class Column:
    name: str
    snowflake_type: str  # e.g. NUMBER(15,2), VARCHAR, TIMESTAMP_NTZ(9)


@dataclass
class ExportStream:
    """A query result being streamed: a fixed schema and an iterator of batches cast to it."""

    schema: pa.Schema
    columns: list[Column]
    query_id: str | None
    expected_rows: int | None
    _batches: Iterator[pa.RecordBatch]
    _resources: ExitStack = field(default_factory=ExitStack)
    rows: int = 0
    started: float = field(default_factory=time.monotonic)
    sql: str = ""  # the statement that produced it

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Yield every batch once; afterwards check the count against Snowflake's."""
        for batch in self._batches:
            self.rows += batch.num_rows
            yield batch
        if self.expected_rows is not None and self.rows != self.expected_rows:
            raise RowCountMismatch(
                f"Snowflake reported {self.expected_rows} rows for query {self.query_id} but {self.rows} arrived"
            )

    def close(self) -> None:
        self._resources.close()

    def __enter__(self) -> ExportStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class SharedConnection:
    """One Snowflake connection for the queries of one run (a range of partitions): opened at
    the first query, closed by close(), so a backfill signs in once rather than per partition."""

    def __init__(self, snowflake: SnowflakeResource):
        self._snowflake = snowflake
        self._resources = ExitStack()
        self._connection: Any = None

    def get(self) -> Any:
        if self._connection is None:
            self._connection = self._resources.enter_context(closing_connection(self._snowflake))
        return self._connection

    def close(self) -> None:
        self._connection = None
        self._resources.close()


def open_export_stream(
    snowflake: SnowflakeResource,
    sql: str,
    *,
    timeout_seconds: int = DEFAULT_QUERY_TIMEOUT_SECONDS,
    log: logging.Logger | None = None,
    query_tag: str | None = None,
    connection: SharedConnection | None = None,
    timestamp_unit: str = "us",
) -> ExportStream:
    """Execute `sql` and return the open stream of its result, every batch cast to the schema its
    declared column types give (declared_schema), with timestamps and times in `timestamp_unit`.

    The caller owns the stream and must close it (it is a context manager). With `connection`,
    the query runs on that shared connection, which the stream leaves open.
    """
    resources = ExitStack()
    try:
        cursor = _tagged_cursor(resources, snowflake, connection, query_tag, timeout_seconds)
        # Snowflake cancels the query itself (abort-request) when the timeout passes.
        cursor.execute(sql, timeout=timeout_seconds)
        if log:
            log.info(f"Query {cursor.sfqid} returned {cursor.rowcount} rows")
        columns = [_column(meta) for meta in cursor.description]
        schema = declared_schema(cursor.description, timestamp_unit)
        batches = iter_batches(cursor.fetch_arrow_batches())
        return ExportStream(
            schema=schema,
            columns=columns,
            query_id=cursor.sfqid,
            expected_rows=cursor.rowcount if isinstance(cursor.rowcount, int) and cursor.rowcount >= 0 else None,
            _batches=(conform(batch, schema, columns) for batch in batches),
            _resources=resources,
            sql=sql,
        )
    except BaseException:
        resources.close()
        raise


def count_rows(
    snowflake: SnowflakeResource,
    sql: str,
    *,
    timeout_seconds: int = DEFAULT_QUERY_TIMEOUT_SECONDS,
    query_tag: str | None = None,
) -> int:
    """Run `sql`, a `SELECT COUNT(*) …`, and return its one number."""
    return int(query_value(snowflake, sql, timeout_seconds=timeout_seconds, query_tag=query_tag).as_py())


def query_value(
    snowflake: SnowflakeResource,
    sql: str,
    *,
    timeout_seconds: int = DEFAULT_QUERY_TIMEOUT_SECONDS,
    query_tag: str | None = None,
    connection: SharedConnection | None = None,
) -> pa.Scalar:
    """Run `sql`, a query of one row and one column, and return its value with its exact Arrow
    type (a NUMBER stays a decimal, a timestamp keeps its nanoseconds)."""
    with ExitStack() as resources:
        cursor = _tagged_cursor(resources, snowflake, connection, query_tag, timeout_seconds)
        cursor.execute(sql, timeout=timeout_seconds)
        table = cursor.fetch_arrow_all()
        if table is None or table.num_rows != 1 or table.num_columns != 1:
            shape = "no rows" if table is None else f"{table.num_rows} row(s) of {table.num_columns} column(s)"
            raise RuntimeError(f"query {cursor.sfqid} returned {shape}, expected one value")
        return table.column(0)[0]


def describe_query(
    snowflake: SnowflakeResource,
    sql: str,
    *,
    timeout_seconds: int = DEFAULT_QUERY_TIMEOUT_SECONDS,
    connection: SharedConnection | None = None,
) -> list[Column]:
    """The columns `sql` returns and their Snowflake types, compiled but not run."""
    with ExitStack() as resources:
        cursor = _tagged_cursor(resources, snowflake, connection, None, timeout_seconds)
        return [_column(meta) for meta in cursor.describe(sql)]


def run_statement(
    snowflake: SnowflakeResource,
    sql: str,
    *,
    timeout_seconds: int = DEFAULT_QUERY_TIMEOUT_SECONDS,
    query_tag: str | None = None,
    connection: SharedConnection | None = None,
    file_stream: Any = None,
) -> tuple[str | None, list[dict[str, Any]]]:
    """Run one statement (such as an unload, or a load's) and return its query id and output
    rows, each by column name in upper case (a statement's output columns vary with its options
    and clauses: read them by name, never by position); `file_stream` is the bytes a PUT uploads."""
    with ExitStack() as resources:
        cursor = _tagged_cursor(resources, snowflake, connection, query_tag, timeout_seconds)
        cursor.execute(sql, timeout=timeout_seconds, file_stream=file_stream)
        names = [str(meta.name).upper() for meta in cursor.description or ()]
        return cursor.sfqid, [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _tagged_cursor(
    resources: ExitStack,
    snowflake: SnowflakeResource,
    connection: SharedConnection | None,
    query_tag: str | None,
    timeout_seconds: int,
) -> Any:
    """A cursor on the shared connection or a new one (closed with `resources`), its session
    tagged so that QUERY_HISTORY records the next query against the export and run."""
    conn = connection.get() if connection else resources.enter_context(closing_connection(snowflake))
    cursor = conn.cursor()
    resources.callback(cursor.close)
    if query_tag:
        cursor.execute(set_query_tag(query_tag), timeout=timeout_seconds)
    return cursor


class closing_connection:
    """SnowflakeResource.get_connection(), closed even when the body raises.

    dagster-snowflake's context manager closes the connection only on a normal exit; here the
    stream outlives the asset body and may fail in the IO manager, so close explicitly.
    """

    def __init__(self, snowflake: SnowflakeResource):
        self._cm = snowflake.get_connection()
        self._conn: Any = None

    def __enter__(self) -> Any:
        self._conn = self._cm.__enter__()
        return self._conn

    def __exit__(self, *exc_info: Any) -> None:
        try:
            # Exit the resource's context normally (it commits a read-only session and closes);
            # throwing our exception into it would skip its close.
            self._cm.__exit__(None, None, None)
        finally:
            self._conn.close()


def iter_batches(tables: Iterator[pa.Table]) -> Iterator[pa.RecordBatch]:
    for table in tables:
        yield from table.to_batches()


class ValueDoesNotFit(TypeError):
    """A value of the result does not fit the type its column was declared with (the export's
    schema): the message names the column, the value and what to do."""


def conform(batch: pa.RecordBatch, schema: pa.Schema, columns: list[Column] | None = None) -> pa.RecordBatch:
    """Cast a batch to the export's schema (declared_schema), each value checked.

    Snowflake sends each result chunk in the narrowest Arrow type that holds that chunk's values
    (int8 in one chunk, int64 or decimal in the next; nanoseconds, or microseconds for a chunk
    with a date beyond 2262), so every chunk is cast. A value that does not fit (digits below the
    microsecond in a microsecond export, a number beyond int64 in a NUMBER(18,0)) fails the
    export, naming the column and the value, instead of being changed.
    """
    if all(column.type == target.type for column, target in zip(batch.columns, schema, strict=True)):
        # Zero-copy: only the field names and metadata change.
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    arrays = []
    for index, (column, target) in enumerate(zip(batch.columns, schema, strict=True)):
        if column.type == target.type:
            arrays.append(column)
            continue
        try:
            arrays.append(column.cast(target.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            declared = columns[index].snowflake_type if columns else str(target.type)
            raise ValueDoesNotFit(_misfit_message(column, target, declared, error)) from error
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _misfit_message(column: pa.Array, target: pa.Field, declared: str, error: Exception) -> str:
    value = _first_misfit(column, target.type)
    shown = f"the value {value}" if value is not None else "a value"
    if pa.types.is_timestamp(target.type) or pa.types.is_time(target.type):
        return (
            f"column {target.name} ({declared}): {shown} has digits below the {_UNIT_NAMES[target.type.unit]}, "
            f"which the export's unit ({target.type.unit}) cannot hold; set `timestamp_unit: ns` on the export "
            "to keep them, or round the column in the query"
        )
    return (
        f"column {target.name} ({declared}): {shown} does not fit {target.type} ({error}); "
        "CAST the column in the export's query to a wider type"
    )


_UNIT_NAMES = {"s": "second", "ms": "millisecond", "us": "microsecond", "ns": "nanosecond"}


def _first_misfit(column: pa.Array, target: pa.DataType) -> Any:
    """The first value of `column` that a checked cast to `target` refuses, when it can be found."""

    try:
        back = column.cast(target, safe=False).cast(column.type, safe=False)
        changed = pc.fill_null(pc.not_equal(back, column), False)
        index = pc.index(changed, True).as_py()
        return column[index].as_py() if index >= 0 else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


# NUMBER(p,0) up to this precision fits int64 (10^18 - 1 < 2^63); wider is decimal128(p,0).
_INT64_DIGITS = 18


def declared_schema(description: Any, timestamp_unit: str = "us") -> pa.Schema:
    """The export's schema, from the result's declared column types (type code, precision,
    scale), before any row is read and whatever the values: one declared type gives one Arrow
    type, in every chunk, on every run, and for an empty result.

    NUMBER(p,0) is int64 up to 18 digits, decimal128(p,0) beyond; NUMBER(p,s) decimal128(p,s);
    TIMESTAMP_* and TIME in `timestamp_unit` (us by default: what Spark and Iceberg read; ns
    keeps Snowflake's nanoseconds); zoned timestamps as UTC instants; VARCHAR and the
    semi-structured types as text (JSON for VARIANT, OBJECT, ARRAY).
    """
    return pa.schema([pa.field(meta.name, _declared_type(meta, timestamp_unit), nullable=True) for meta in description])


def _declared_type(meta: Any, unit: str) -> pa.DataType:
    name = _TYPE_NAMES.get(meta.type_code, "VARIANT")
    if name == "NUMBER":
        precision, scale = meta.precision or 38, meta.scale or 0
        if scale == 0:
            return pa.int64() if precision <= _INT64_DIGITS else pa.decimal128(precision, 0)
        return pa.decimal128(precision, scale)
    if name == "FLOAT":
        return pa.float64()
    if name == "DATE":
        return pa.date32()
    if name == "BOOLEAN":
        return pa.bool_()
    if name == "BINARY":
        return pa.binary()
    if name == "TIMESTAMP_NTZ":
        return pa.timestamp(unit)
    if name.startswith("TIMESTAMP"):
        return pa.timestamp(unit, tz="UTC")
    if name == "TIME":
        return pa.time64(unit)
    return pa.string()  # VARCHAR, and semi-structured values arrive as JSON text


def _column(meta: Any) -> Column:
    name = _TYPE_NAMES.get(meta.type_code, f"TYPE_{meta.type_code}")
    if name == "NUMBER" and meta.precision is not None:
        name = f"NUMBER({meta.precision},{meta.scale or 0})"
    elif name in ("TIME", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ") and meta.scale is not None:
        name = f"{name}({meta.scale})"
    return Column(meta.name, name)
