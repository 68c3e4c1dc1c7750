"""The result stream: one schema for batches of differing integer widths, counts checked.

fakesnow sends every result as one batch of one width, so the chunk-to-chunk variation real
Snowflake produces is built here with Arrow directly.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from types import SimpleNamespace

import pyarrow as pa
import pytest

from data_migration.snowflake.queries import (
    ExportStream,
    RowCountMismatch,
    _conformed,
    conform,
    open_export_stream,
    unified_schema,
)


def meta(name: str, type_code: int, precision: int | None = None, scale: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, type_code=type_code, precision=precision, scale=scale)


DESCRIPTION = [meta("ID", 0, 38, 0), meta("PRICE", 0, 15, 2), meta("NAME", 2), meta("DAY", 3), meta("AT", 8, None, 9)]


def test_integer_widths_are_unified_to_int64():
    first = pa.record_batch(
        [
            pa.array([1, 2], pa.int8()),
            pa.array([Decimal("1.50"), None], pa.decimal128(15, 2)),
            pa.array(["a", "b"]),
            pa.array([0, 1], pa.date32()),
            pa.array([0, 1], pa.timestamp("ns")),
        ],
        names=["ID", "PRICE", "NAME", "DAY", "AT"],
    )
    later = pa.record_batch(
        [
            pa.array([2**40, None], pa.int64()),
            pa.array([Decimal("2.00"), Decimal("3.10")], pa.decimal128(15, 2)),
            pa.array(["c", None]),
            pa.array([2, 3], pa.date32()),
            pa.array([2, 3], pa.timestamp("ns")),
        ],
        names=["ID", "PRICE", "NAME", "DAY", "AT"],
    )
    schema = unified_schema(DESCRIPTION, first.schema)
    assert schema.field("ID").type == pa.int64()
    assert schema.field("PRICE").type == pa.decimal128(15, 2)
    out = list(_conformed(first, iter([later]), schema))
    assert all(batch.schema == schema for batch in out)
    assert pa.Table.from_batches(out).column("ID").to_pylist() == [1, 2, 2**40, None]


def test_a_value_that_does_not_fit_fails_rather_than_changes():
    schema = pa.schema([("ID", pa.int64())])
    huge = pa.record_batch([pa.array([Decimal(2**70)], pa.decimal128(38, 0))], names=["ID"])
    with pytest.raises(TypeError, match="CAST the column"):
        conform(huge, schema)


def test_empty_result_schema_comes_from_the_description():
    schema = unified_schema(DESCRIPTION + [meta("FLAG", 13), meta("TZ", 7, None, 3), meta("V", 5)], None)
    assert schema.field("ID").type == pa.int64()
    assert schema.field("PRICE").type == pa.decimal128(15, 2)
    assert schema.field("DAY").type == pa.date32()
    assert schema.field("AT").type == pa.timestamp("ns")
    assert schema.field("FLAG").type == pa.bool_()
    assert schema.field("TZ").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("V").type == pa.string()


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
