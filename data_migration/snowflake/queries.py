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
) -> ExportStream:
    """Execute `sql` and return the open stream of its result.

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
        batches = iter_batches(cursor.fetch_arrow_batches())
        first = next(batches, None)
        schema = unified_schema(cursor.description, first.schema if first is not None else None)
        return ExportStream(
            schema=schema,
            columns=columns,
            query_id=cursor.sfqid,
            expected_rows=cursor.rowcount if isinstance(cursor.rowcount, int) and cursor.rowcount >= 0 else None,
            _batches=_conformed(first, batches, schema),
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


def _conformed(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    if first is None:
        return
    yield conform(first, schema)
    for batch in rest:
        yield conform(batch, schema)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a batch to the export's schema.

    Snowflake sends each result chunk with the narrowest integer type that holds that chunk's
    values (int8 in one chunk, int64 in the next), so batches must be widened to one schema.
    A checked cast: a value that does not fit fails the export instead of being changed.
    """
    if all(column.type == target.type for column, target in zip(batch.columns, schema, strict=True)):
        # Zero-copy: only the field names and metadata change.
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    try:
        return pa.RecordBatch.from_arrays(
            [column.cast(target.type, safe=True) for column, target in zip(batch.columns, schema, strict=True)],
            schema=schema,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise TypeError(
            f"a result chunk does not fit the export's schema ({error}); "
            "CAST the column in the export's query to a wider type"
        ) from error


def unified_schema(description: Any, first: pa.Schema | None) -> pa.Schema:
    """The schema every batch is cast to: exact types, integers widened, no connector metadata."""
    fields = []
    for index, meta in enumerate(description):
        arrow_type = _described_type(meta)
        if first is not None:
            seen = first.field(index).type
            if pa.types.is_integer(seen):
                seen = pa.int64()
            # Keep what the connector produced (exact time units, decimal vs integer), except
            # integer widths, which vary from chunk to chunk.
            arrow_type = seen
        fields.append(pa.field(meta.name, arrow_type, nullable=True))
    return pa.schema(fields)


def _described_type(meta: Any) -> pa.DataType:
    """The Arrow type for a column when no batch has been seen (an empty result)."""
    name = _TYPE_NAMES.get(meta.type_code, "VARIANT")
    scale = meta.scale or 0
    if name == "NUMBER":
        return pa.int64() if scale == 0 else pa.decimal128(meta.precision or 38, scale)
    if name == "FLOAT":
        return pa.float64()
    if name == "DATE":
        return pa.date32()
    if name == "BOOLEAN":
        return pa.bool_()
    if name == "BINARY":
        return pa.binary()
    unit = "s" if scale == 0 else "ms" if scale <= 3 else "us" if scale <= 6 else "ns"
    if meta.scale is None:
        unit = "ns"
    if name == "TIMESTAMP_NTZ":
        return pa.timestamp(unit)
    if name.startswith("TIMESTAMP"):
        return pa.timestamp(unit, tz="UTC")
    if name == "TIME":
        return pa.time32(unit) if unit in ("s", "ms") else pa.time64(unit)
    return pa.string()  # VARCHAR, and semi-structured values arrive as JSON text


def _column(meta: Any) -> Column:
    name = _TYPE_NAMES.get(meta.type_code, f"TYPE_{meta.type_code}")
    if name == "NUMBER" and meta.precision is not None:
        name = f"NUMBER({meta.precision},{meta.scale or 0})"
    elif name in ("TIME", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ") and meta.scale is not None:
        name = f"{name}({meta.scale})"
    return Column(meta.name, name)
