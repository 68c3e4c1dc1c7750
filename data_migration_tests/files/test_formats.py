"""Each writer's bytes, read back by an independent reader, equal the source values."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_migration.files.formats import FORMATS

UTC = dt.UTC
ROWS = [
    {
        "ID": 1,
        "AMOUNT": Decimal("12345678901234567890123456789.123456789"),
        "NAME": "plain",
        "DAY": dt.date(1, 1, 1),
        "AT": dt.datetime(2024, 3, 10, 10, 30, tzinfo=UTC),
        "LOCAL": dt.datetime(2024, 1, 1, 1, 2, 3, 456789),
        "OK": True,
        "RATIO": 1.5,
        "RAW": b"\x00\xff",
    },
    {
        "ID": 2,
        "AMOUNT": Decimal("-0.000000001"),
        "NAME": "",
        "DAY": dt.date(9999, 12, 31),
        "AT": dt.datetime(2024, 11, 3, 1, 30, tzinfo=UTC),
        "LOCAL": dt.datetime(1970, 1, 1),
        "OK": False,
        "RATIO": float("inf"),
        "RAW": b"",
    },
    {
        "ID": 3,
        "AMOUNT": None,
        "NAME": None,
        "DAY": None,
        "AT": None,
        "LOCAL": None,
        "OK": None,
        "RATIO": None,
        "RAW": None,
    },
    {
        "ID": 4,
        "AMOUNT": Decimal("0E-9"),
        "NAME": 'emoji 🎉, "quotes", comma,\nnewline, עברית, e\u0301',
        "DAY": dt.date(2024, 2, 29),
        "AT": dt.datetime(2000, 1, 1, tzinfo=UTC),
        "LOCAL": dt.datetime(2024, 2, 29, 23, 59, 59),
        "OK": True,
        "RATIO": float("nan"),
        "RAW": b"ab",
    },
]
SCHEMA = pa.schema(
    [
        ("ID", pa.int64()),
        ("AMOUNT", pa.decimal128(38, 9)),
        ("NAME", pa.string()),
        ("DAY", pa.date32()),
        ("AT", pa.timestamp("us", tz="UTC")),
        ("LOCAL", pa.timestamp("us")),
        ("OK", pa.bool_()),
        ("RATIO", pa.float64()),
        ("RAW", pa.binary()),
    ]
)


def write(file_type: str, batches: list[pa.RecordBatch], schema: pa.Schema = SCHEMA, **options: Any) -> bytes:
    sink = io.BytesIO()
    writer = FORMATS[file_type].writer(sink, schema, **options)
    for batch in batches:
        writer.write_batch(batch)
    writer.close()
    return sink.getvalue()


def batches() -> list[pa.RecordBatch]:
    table = pa.Table.from_pylist(ROWS, schema=SCHEMA)
    return table.to_batches(max_chunksize=2)  # more than one batch, as from Snowflake


def test_parquet_keeps_exact_types_and_values(tmp_path):
    data = write("parquet", batches())
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.field("AMOUNT").type == pa.decimal128(38, 9)  # never a float
    assert table.schema.field("AT").type == pa.timestamp("us", tz="UTC")
    got = table.to_pylist()
    for expected, row in zip(ROWS, got, strict=True):
        for name, value in expected.items():
            if isinstance(value, float) and value != value:
                assert row[name] != row[name]
            else:
                assert row[name] == value, name
    # An independent reader agrees on the exact decimal.
    path = tmp_path / "data.parquet"
    path.write_bytes(data)
    rows = duckdb.sql("select AMOUNT::varchar from read_parquet($p) where ID = 1", params={"p": str(path)}).fetchall()
    assert rows == [("12345678901234567890123456789.123456789",)]


def test_csv_is_rfc4180_with_exact_text_and_null_distinct_from_empty():
    data = write("csv", batches())
    text = data.decode("utf-8")
    assert not text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(SCHEMA.names)
    assert rows[1][:3] == ["1", "12345678901234567890123456789.123456789", "plain"]
    assert rows[2][1] == "-0.000000001"  # exact fixed-point text, not 1E-9
    assert rows[4][1] == "0.000000000"
    assert rows[1][8] == "00FF"  # binary as hex
    assert rows[4][2] == ROWS[3]["NAME"]  # quotes, comma, newline, unicode survive
    assert rows[1][3] == "0001-01-01" and rows[2][3] == "9999-12-31"
    # NULL is an empty unquoted field, '' is "": distinguishable in the raw text.
    lines = text.splitlines()
    assert lines[2].split(",")[2] == '""'
    assert lines[3] == "3,,,,,,,,"
    # And pyarrow's reader (the project's load_input) gives them back as None and ''.
    table = FORMATS["csv"].reader.read(io.BytesIO(data))
    assert table.column("NAME").to_pylist()[1:3] == ["", None]


def test_json_lines_are_exact_and_valid_json():
    data = write("json", batches())
    lines = data.decode("utf-8").splitlines()
    assert len(lines) == 4
    rows = [json.loads(line) for line in lines]  # strict: NaN would not parse as a number here
    assert list(rows[0]) == list(SCHEMA.names)
    assert rows[0]["AMOUNT"] == "12345678901234567890123456789.123456789"
    assert rows[1]["AMOUNT"] == "-0.000000001"
    assert rows[1]["NAME"] == "" and rows[2]["NAME"] is None
    assert rows[0]["DAY"] == "0001-01-01"
    assert dt.datetime.fromisoformat(rows[0]["AT"]) == ROWS[0]["AT"]
    assert rows[0]["LOCAL"] == "2024-01-01T01:02:03.456789"  # a microsecond column: six digits
    assert rows[0]["AT"] == "2024-03-10T10:30:00.000000+00:00"
    assert rows[1]["RATIO"] == "Infinity" and rows[3]["RATIO"] == "NaN"
    assert rows[0]["RAW"] == "00FF"
    assert rows[3]["NAME"] == ROWS[3]["NAME"]
    assert "🎉" in lines[3]  # UTF-8, not \\u escapes


def test_json_decimals_as_numbers_keep_the_exact_text():
    """json_decimals: number writes each decimal's exact text as a JSON number; a reader that keeps
    numbers exact (Python's json with parse_float=Decimal, Snowflake's COPY into NUMBER) gets the
    value back unchanged, where a double could not hold it."""
    lines = write("json", batches(), decimals="number").decode().splitlines()
    assert lines[0].startswith('{"ID":1,"AMOUNT":12345678901234567890123456789.123456789,')
    assert '"AMOUNT":-0.000000001,' in lines[1] and '"AMOUNT":null,' in lines[2]
    rows = [json.loads(line, parse_float=Decimal) for line in lines]
    assert [row["AMOUNT"] for row in rows] == [row["AMOUNT"] for row in ROWS]
    assert float(rows[0]["AMOUNT"]) != rows[0]["AMOUNT"]  # what a double would have lost
    assert [json.loads(line) for line in write("json", batches()).decode().splitlines()][0]["AMOUNT"] == (
        "12345678901234567890123456789.123456789"  # the default stays an exact string
    )
    with pytest.raises(ValueError, match="decimals must be 'string' or 'number'"):
        write("json", batches(), decimals="float")


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_empty_result_is_a_valid_file(file_type: str):
    data = write(file_type, [])
    table = FORMATS[file_type].reader.read(io.BytesIO(data))
    assert table.num_rows == 0
    if file_type == "parquet":
        assert table.schema.names == SCHEMA.names
    if file_type == "csv":
        assert data.decode() == ",".join(f'"{n}"' for n in SCHEMA.names) + "\n"
    if file_type == "json":
        assert data == b""


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_reader_round_trip_to_pandas(file_type: str):
    simple = pa.schema([("ID", pa.int64()), ("NAME", pa.string())])
    batch = pa.RecordBatch.from_pylist([{"ID": 1, "NAME": "a"}, {"ID": 2, "NAME": None}], schema=simple)
    frame = FORMATS[file_type].reader.read(io.BytesIO(write(file_type, [batch], simple))).to_pandas()
    assert list(frame["ID"]) == [1, 2]
    assert frame["NAME"].iloc[0] == "a"


def test_csv_accepts_view_types():
    schema = pa.schema([("S", pa.string_view()), ("B", pa.binary_view())])
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["x", None], pa.string_view()), pa.array([b"\x01", None], pa.binary_view())], schema=schema
    )
    assert write("csv", [batch], schema).decode() == '"S","B"\n"x","01"\n,\n'


FORMULAS = [
    '=HYPERLINK("http://x")',
    "+cmd|calc",
    "-2+3",
    "@SUM(1)",
    "\tlead tab",
    "\rlead cr",
    "\x00nul",
    "é=",  # a multi-byte first character
    " =1",
    "plain",
    "",
    None,
    "a=b",
]


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string()])
@pytest.mark.parametrize("escape", [True, False])
def test_csv_formula_escaping(escape: bool, text_type: pa.DataType):
    schema = pa.schema([("TEXT", text_type), ("AMOUNT", pa.int64()), ("PRICE", pa.decimal128(5, 2))])
    batch = pa.RecordBatch.from_pylist(
        [{"TEXT": text, "AMOUNT": -2, "PRICE": Decimal("-1.50")} for text in FORMULAS], schema=schema
    )
    sink = io.BytesIO()
    writer = FORMATS["csv"].writer(sink, schema, escape_formulas=escape)
    writer.write_batch(batch)
    writer.close()
    rows = list(csv.reader(io.StringIO(sink.getvalue().decode("utf-8"), newline="")))[1:]
    expected = [("'" + t if escape and t and t[0] in "=+-@\t\r\x00" else (t or "")) for t in FORMULAS]
    assert [row[0] for row in rows] == expected
    assert all(row[1:] == ["-2", "-1.50"] for row in rows)  # numbers are never escaped
    # NULL and '' still differ (unquoted empty versus "").
    assert sink.getvalue().decode().splitlines()[-3:-1] == ['"",-2,"-1.50"', ',-2,"-1.50"']


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_times_and_timestamps_have_the_units_fractional_digits_in_text_formats(unit: str):
    """One fixed form per unit: six fractional digits for microseconds (an export's default),
    nine for nanoseconds (timestamp_unit: ns), and six for a coarser unit, padded; zoned values in
    UTC; years 1 and 9999 (outside what a nanosecond timestamp holds) and NULL."""
    fraction = {"s": 0, "ms": 123_000, "us": 123_456, "ns": 123_456}[unit]
    local = [dt.datetime(1, 1, 1), dt.datetime(2024, 3, 10, 2, 30, 0, fraction), None]
    if unit == "ns":
        local[0] = dt.datetime(1677, 9, 22)  # the earliest year a nanosecond timestamp holds
    zoned = [dt.datetime(2024, 11, 3, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))), None, None]
    times = [dt.time(0, 0), dt.time(23, 59, 59, fraction), None]
    time_type = pa.time32(unit) if unit in ("s", "ms") else pa.time64(unit)
    schema = pa.schema([("L", pa.timestamp(unit)), ("Z", pa.timestamp(unit, tz="Asia/Kolkata")), ("T", time_type)])
    batch = pa.RecordBatch.from_arrays(
        [pa.array(local, schema[0].type), pa.array(zoned, schema[1].type), pa.array(times, time_type)], schema=schema
    )
    width = 9 if unit == "ns" else 6
    digits, zero = f"{fraction * 1000:09d}"[:width], "0" * width
    first = "1677-09-22" if unit == "ns" else "0001-01-01"
    rows = list(csv.reader(io.StringIO(write("csv", [batch], schema).decode())))
    assert rows[1:] == [
        [f"{first} 00:00:00.{zero}", f"2024-11-02 20:00:00.{zero}Z", f"00:00:00.{zero}"],
        [f"2024-03-10 02:30:00.{digits}", "", f"23:59:59.{digits}"],
        ["", "", ""],
    ]
    lines = [json.loads(line) for line in write("json", [batch], schema).decode().splitlines()]
    assert lines == [
        {"L": f"{first}T00:00:00.{zero}", "Z": f"2024-11-02T20:00:00.{zero}+00:00", "T": f"00:00:00.{zero}"},
        {"L": f"2024-03-10T02:30:00.{digits}", "Z": None, "T": f"23:59:59.{digits}"},
        {"L": None, "Z": None, "T": None},
    ]


@pytest.mark.parametrize("row_groups", [1, 2_000])
def test_parquet_rows_from_the_footer_alone(row_groups: int):
    """The default checks' row count: the footer, from the end of the file, in one read of 64 KiB
    or, for a footer larger than that (thousands of row groups), a second read of its length."""
    table = pa.table({"A": pa.array(range(row_groups * 3), pa.int64()), "B": pa.array(["x"] * (row_groups * 3))})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=3)
    data = sink.getvalue()
    reads: list[int] = []

    def read_suffix(length: int) -> tuple[int, bytes]:
        reads.append(length)
        return len(data), data[-length:]

    assert FORMATS["parquet"].reader.rows_from_metadata(read_suffix) == row_groups * 3
    footer = int.from_bytes(data[-8:-4], "little")
    assert reads == ([65536] if footer + 8 <= 65536 else [65536, footer + 8])
    assert FORMATS["csv"].reader.rows_from_metadata(read_suffix) is None


@pytest.mark.parametrize("tail", [b"not parquet at all", b"PAR1" + b"\xff\xff\xff\x7f" + b"PAR1"])
def test_a_file_that_does_not_end_like_parquet_is_an_error(tail: bytes):
    with pytest.raises(ValueError, match="not a Parquet file|the footer claims"):
        FORMATS["parquet"].reader.rows_from_metadata(lambda length: (len(tail), tail[-length:]))


def test_json_floats_are_the_same_doubles_with_floats_still_visible():
    """Float text is built in Arrow: every value reads back as the same double, integral values
    keep ".0" (so a reader still sees a float column), and non-finite values are strings."""
    import math
    import random

    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(5000)] + [
        rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(5000)
    ]
    specials = [1.0, -0.0, 100.0, 2.0**53, 5e-324, 1.7976931348623157e308, math.nan, math.inf, -math.inf, None]
    schema = pa.schema([("F", pa.float64())])
    batch = pa.RecordBatch.from_arrays([pa.array(values + specials, pa.float64())], schema=schema)
    lines = write("json", [batch], schema).decode().splitlines()
    cells = [line[len('{"F":') : -1] for line in lines]
    assert [json.loads(cell) for cell in cells[: len(values)]] == values  # the same doubles, all 10,000
    assert cells[len(values) :] == [
        "1.0", "-0.0", "100.0", "9.007199254740992e+15", "5e-324", "1.7976931348623157e+308",
        '"NaN"', '"Infinity"', '"-Infinity"', "null",
    ]  # fmt: skip
    # Without an exponent the text is Python's own; with one, only the exponent's spelling may differ.
    assert cells[:5000] == [json.dumps(value) for value in values[:5000]]
