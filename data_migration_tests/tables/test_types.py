"""Which Arrow types each table format takes (data_migration/tables/types.py), table-driven: the
type each column is written with, or the refusal that names it; and the refusals the libraries
themselves make, so the table in types.py stays true of pyiceberg 0.12 and deltalake 1.6.6."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.io.pyarrow import UnsupportedPyArrowTypeException, pyarrow_to_schema
from pyiceberg.table.name_mapping import NameMapping

from data_migration.tables.types import TableTypeError, conform, delta_write_schema, iceberg_write_schema

REFUSED = None
# (arrow type, Iceberg v2 writes it as, Delta writes it as); None: refused
CASES = [
    (pa.bool_(), pa.bool_(), pa.bool_()),
    (pa.int8(), pa.int8(), pa.int8()),
    (pa.int64(), pa.int64(), pa.int64()),
    (pa.uint8(), pa.int16(), pa.int16()),
    (pa.uint16(), pa.int32(), pa.int32()),
    (pa.uint32(), pa.int64(), pa.int64()),
    (pa.uint64(), REFUSED, REFUSED),
    (pa.float16(), pa.float32(), pa.float32()),
    (pa.float64(), pa.float64(), pa.float64()),
    (pa.string(), pa.string(), pa.string()),
    (pa.large_string(), pa.large_string(), pa.large_string()),
    (pa.binary(), pa.binary(), pa.binary()),
    (pa.binary(16), pa.binary(16), pa.binary()),
    (pa.date32(), pa.date32(), pa.date32()),
    (pa.date64(), pa.date32(), pa.date32()),
    (pa.decimal128(38, 10), pa.decimal128(38, 10), pa.decimal128(38, 10)),
    (pa.decimal256(39, 0), REFUSED, REFUSED),
    (pa.decimal256(20, 2), pa.decimal128(20, 2), pa.decimal128(20, 2)),
    (pa.timestamp("s"), pa.timestamp("us"), pa.timestamp("us")),
    (pa.timestamp("ms", "UTC"), pa.timestamp("us", "UTC"), pa.timestamp("us", "UTC")),
    (pa.timestamp("us", "+00:00"), pa.timestamp("us", "+00:00"), pa.timestamp("us", "+00:00")),
    (pa.timestamp("ns"), REFUSED, REFUSED),
    (pa.timestamp("us", "Europe/Berlin"), REFUSED, REFUSED),
    (pa.time32("ms"), pa.time64("us"), REFUSED),
    (pa.time64("us"), pa.time64("us"), REFUSED),
    (pa.time64("ns"), REFUSED, REFUSED),
    (pa.null(), REFUSED, REFUSED),
    (pa.list_(pa.int64()), REFUSED, REFUSED),
    (pa.struct([("a", pa.int64())]), REFUSED, REFUSED),
    (pa.map_(pa.string(), pa.string()), REFUSED, REFUSED),
    (pa.dictionary(pa.int32(), pa.string()), pa.string(), pa.string()),
    (pa.dictionary(pa.int8(), pa.uint8()), pa.int16(), pa.int16()),
    (pa.duration("us"), REFUSED, REFUSED),
]


@pytest.mark.parametrize(("arrow", "iceberg", "delta"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_format_writes_or_refuses_each_type(
    arrow: pa.DataType, iceberg: pa.DataType | None, delta: pa.DataType | None
):
    for write_schema, expected in ((iceberg_write_schema, iceberg), (delta_write_schema, delta)):
        schema = pa.schema([pa.field("c", arrow)])
        if expected is None:
            with pytest.raises(TableTypeError) as refused:
                write_schema(schema)
            assert [p.column for p in refused.value.problems] == ["c"]
            assert f"c ({arrow})" in str(refused.value)
        else:
            assert write_schema(schema).field("c").type == expected


@pytest.mark.parametrize(("arrow", "iceberg", "delta"), [c for c in CASES if c[1] is not None], ids=str)
def test_pyiceberg_takes_every_type_iceberg_write_schema_lets_through(
    arrow: pa.DataType, iceberg: pa.DataType, delta: object
):
    schema = pa.schema([pa.field("c", iceberg)])
    assert pyarrow_to_schema(schema, name_mapping=NameMapping.model_validate([{"field-id": 1, "names": ["c"]}]))


def test_every_refusal_is_reported_at_once_with_what_to_do():
    schema = pa.schema(
        [
            pa.field("ok", pa.int64()),
            pa.field("ts", pa.timestamp("ns")),
            pa.field("t", pa.time64("us")),
            pa.field("n", pa.null()),
        ]
    )
    with pytest.raises(TableTypeError) as delta_refused:
        delta_write_schema(schema)
    assert [p.column for p in delta_refused.value.problems] == ["ts", "t", "n"]
    assert "timestamp_unit: us" in str(delta_refused.value) and "TO_VARCHAR" in str(delta_refused.value)
    with pytest.raises(TableTypeError) as iceberg_refused:
        iceberg_write_schema(schema)
    assert [p.column for p in iceberg_refused.value.problems] == ["ts", "n"]


@pytest.mark.parametrize("name", ["has space", "a,b", "x;y", "f(x)", "a=b", "tab\there"])
def test_delta_refuses_names_that_need_column_mapping(name: str):
    schema = pa.schema([pa.field(name, pa.int64())])
    assert iceberg_write_schema(schema).names == [name]
    with pytest.raises(TableTypeError, match="column mapping"):
        delta_write_schema(schema)


def test_delta_refuses_two_names_that_differ_only_in_case():
    with pytest.raises(TableTypeError, match="case-insensitively"):
        delta_write_schema(pa.schema([pa.field("Id", pa.int64()), pa.field("ID", pa.int64())]))


def test_conform_widens_without_losing_a_value_and_refuses_an_overflow():
    write_schema = iceberg_write_schema(pa.schema([pa.field("u", pa.uint32()), pa.field("t", pa.timestamp("ms"))]))
    batch = pa.record_batch(
        [pa.array([2**32 - 1], pa.uint32()), pa.array([1_700_000_000_123], pa.timestamp("ms"))], ["u", "t"]
    )
    out = conform(batch, write_schema)
    assert out.schema == write_schema and out.column("u").to_pylist() == [2**32 - 1]
    assert out.column("t").cast(pa.int64()).to_pylist() == [1_700_000_000_123_000]
    with pytest.raises(pa.ArrowInvalid):
        conform(pa.record_batch([pa.array([2**40], pa.int64())], ["u"]), pa.schema([pa.field("u", pa.int32())]))


@pytest.mark.parametrize(
    "arrow",
    [
        pa.timestamp("ns"),
        pa.timestamp("us", "Europe/Berlin"),
        pa.time64("ns"),
        pa.decimal256(39, 0),
        pa.null(),
        pa.duration("us"),
    ],
    ids=str,
)
def test_pyiceberg_itself_refuses_what_iceberg_write_schema_refuses(arrow: pa.DataType):
    with pytest.raises((UnsupportedPyArrowTypeException, ValueError)):
        pyarrow_to_schema(
            pa.schema([pa.field("c", arrow)]),
            name_mapping=NameMapping.model_validate([{"field-id": 1, "names": ["c"]}]),
        )


def test_pyiceberg_would_take_uint64_as_long_so_the_refusal_is_ours():
    # pyiceberg 0.12 maps uint64 to a signed long: values over 2**63-1 would not fit.
    mapped = pyarrow_to_schema(
        pa.schema([pa.field("c", pa.uint64())]),
        name_mapping=NameMapping.model_validate([{"field-id": 1, "names": ["c"]}]),
    )
    assert str(mapped.find_field("c").field_type) == "long"
    with pytest.raises(TableTypeError, match="uint64"):
        iceberg_write_schema(pa.schema([pa.field("c", pa.uint64())]))
