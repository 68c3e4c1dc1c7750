"""The result stream: the schema from the declared column types, every chunk cast to it and
each value checked, counts checked.

fakesnow sends every result as one batch, so the chunk-to-chunk variation real Snowflake
produces (the narrowest integer type per chunk, microseconds for a chunk that holds a date beyond
2262, decimals for values beyond int64) is built here with Arrow directly; the emulator's own
chunks are tested in exports/test_types.py.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from types import SimpleNamespace

import pyarrow as pa
import pytest

from data_migration.snowflake.queries import (
    Column,
    ExportStream,
    RowCountMismatch,
    ValueDoesNotFit,
    conform,
    declared_schema,
    open_export_stream,
)


def meta(name: str, type_code: int, precision: int | None = None, scale: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, type_code=type_code, precision=precision, scale=scale)


DESCRIPTION = [
    meta("ID", 0, 38, 0),
    meta("SMALL", 0, 18, 0),
    meta("PRICE", 0, 15, 2),
    meta("NAME", 2),
    meta("DAY", 3),
    meta("AT", 8, None, 9),
    meta("ZONED", 7, None, 3),
    meta("CLOCK", 12, None, 9),
    meta("FLAG", 13),
    meta("V", 5),
]
COLUMNS = [Column(m.name, f"TYPE_{m.type_code}") for m in DESCRIPTION]


def test_the_schema_comes_from_the_declared_types_before_any_row():
    schema = declared_schema(DESCRIPTION)
    assert [str(field.type) for field in schema] == [
        "decimal128(38, 0)",  # NUMBER(38,0): beyond int64's 18 digits
        "int64",  # NUMBER(18,0)
        "decimal128(15, 2)",
        "string",
        "date32[day]",
        "timestamp[us]",  # microseconds by default, whatever the declared scale
        "timestamp[us, tz=UTC]",
        "time64[us]",
        "bool",
        "string",
    ]
    nanos = declared_schema(DESCRIPTION, "ns")
    assert nanos.field("AT").type == pa.timestamp("ns") and nanos.field("CLOCK").type == pa.time64("ns")


def chunk(ids: pa.Array, small: pa.Array, at: pa.Array) -> pa.RecordBatch:
    n = len(ids)
    return pa.record_batch(
        [
            ids,
            small,
            pa.array([Decimal("1.50")] * n, pa.decimal128(15, 2)),
            pa.array(["a"] * n),
            pa.array([0] * n, pa.date32()),
            at,
            pa.array([0] * n, pa.timestamp("ms", tz="UTC")),
            pa.array([0] * n, pa.time64("ns")),
            pa.array([True] * n),
            pa.array(["{}"] * n),
        ],
        names=[m.name for m in DESCRIPTION],
    )


def test_chunks_of_differing_types_give_one_schema_and_exact_values():
    """Each chunk in the narrowest type of its own values, as Snowflake sends them: int8, then a
    decimal beyond int64; nanoseconds, then microseconds for a chunk that holds 9999-12-31."""
    schema = declared_schema(DESCRIPTION)
    first = chunk(pa.array([1, 2], pa.int8()), pa.array([1, 2], pa.int8()), pa.array([0, 1_000], pa.timestamp("ns")))
    huge = Decimal(12345678901234567890123456789)
    later = chunk(
        pa.array([huge, None], pa.decimal128(38, 0)),
        pa.array([2**40, None], pa.int64()),
        pa.array([253402300799999999, None], pa.timestamp("us")),  # 9999-12-31 23:59:59.999999
    )
    out = [conform(batch, schema, COLUMNS) for batch in (first, later)]
    assert all(batch.schema == schema for batch in out)
    table = pa.Table.from_batches(out)
    assert table.column("ID").to_pylist() == [1, 2, huge, None]
    assert table.column("SMALL").to_pylist() == [1, 2, 2**40, None]
    assert str(table.column("AT")[2].as_py()) == "9999-12-31 23:59:59.999999"


def test_a_value_that_does_not_fit_fails_naming_the_column_the_value_and_the_way_out():
    schema = declared_schema(DESCRIPTION)
    nanos = chunk(
        pa.array([1], pa.int8()), pa.array([1], pa.int8()), pa.array([1_704_110_400_123_456_789], pa.timestamp("ns"))
    )
    with pytest.raises(ValueDoesNotFit, match=r"column AT \(TYPE_8\): the value 2024-01-01 12:00:00.123456789 has "
                       r"digits below the microsecond.*timestamp_unit: ns"):  # fmt: skip
        conform(nanos, schema, COLUMNS)
    wide = chunk(
        pa.array([1], pa.int8()), pa.array([Decimal(2**70)], pa.decimal128(38, 0)), pa.array([0], pa.timestamp("ns"))
    )
    with pytest.raises(
        ValueDoesNotFit, match=r"column SMALL \(TYPE_0\): the value 1180591620717411303424 does not fit int64"
    ):
        conform(wide, schema, COLUMNS)
    assert conform(nanos, declared_schema(DESCRIPTION, "ns"), COLUMNS).column(5)[0].value == 1_704_110_400_123_456_789


def test_short_stream_raises_row_count_mismatch():
    batch = pa.record_batch([pa.array([1, 2])], names=["ID"])
    stream = ExportStream(schema=batch.schema, columns=[], query_id="q1", expected_rows=3, _batches=iter([batch]))
    with pytest.raises(RowCountMismatch, match="reported 3 rows for query q1 but 2 arrived"):
        list(stream.batches())


class _FakeResource:
    """Stands in for SnowflakeResource to observe that the connection is closed on every path."""

    def __init__(self, fail_on_execute: bool):
        self.fail_on_execute = fail_on_execute
        self.closed = 0

    @contextlib.contextmanager
    def get_connection(self):
        resource = self

        class Cursor:
            description = [meta("ID", 0, 38, 0)]
            sfqid = "q"
            rowcount = 1

            def execute(self, sql, timeout):
                if resource.fail_on_execute:
                    raise RuntimeError("SQL compilation error")

            def fetch_arrow_batches(self):
                yield pa.table({"ID": [1]})

            def close(self):
                pass

        class Connection:
            def cursor(self):
                return Cursor()

            def close(self):
                resource.closed += 1

        yield Connection()  # like dagster-snowflake: no close if the body raises


@pytest.mark.parametrize("fail_on_execute", [True, False])
def test_connection_is_closed_on_every_path(fail_on_execute: bool):
    resource = _FakeResource(fail_on_execute)
    if fail_on_execute:
        with pytest.raises(RuntimeError):
            open_export_stream(resource, "select 1")  # type: ignore[arg-type]
    else:
        with open_export_stream(resource, "select 1") as stream:  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                for _ in stream.batches():
                    raise ValueError("writer failed")
    assert resource.closed >= 1
