"""The README's type table, end to end: every Snowflake type and edge value through the emulator,
exported in each format, read back by an independent reader, compared cell by cell.

Emulator gaps, and where those cases are tested instead:
- fakesnow returns TIMESTAMP_TZ (and LTZ) converted to UTC, so instants are compared; what each
  format writes for a zoned timestamp is covered in test_formats.py.
(The embedded emulator sends NULL timestamps as NULL, in Snowflake's result format, local/results.py;
the NULL and chunked cases are in local/test_result_format.py and test_result_chunks.py.)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from data_migration.definitions import build_definitions
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import BUCKET, COLUMNS, ROWS, Snowflake, write_config

QUERY = 'select * from TYPEDB.PUBLIC.TYPES order by "Id"'


@pytest.fixture(scope="module")
def types_table(fake_snowflake: Snowflake) -> list[dict[str, Any]]:
    with fake_snowflake.connect("TYPEDB", "PUBLIC") as conn:
        cursor = conn.cursor()
        cursor.execute(f"create or replace table TYPES ({COLUMNS})")
        for row in ROWS:
            cursor.execute(f"insert into TYPES select {row}")
        cursor.execute(QUERY)
        return cursor.fetch_arrow_all().to_pylist()


def export(production_env: dict, tmp_path: Path, file_type: str, s3: Any) -> bytes:
    key = f"exports/types/data.{file_type}"
    run_export(production_env, tmp_path, {"table": "TYPES", "s3_path": key, "file_type": file_type, "query": QUERY})
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def run_export(production_env: dict, tmp_path: Path, entry: dict[str, Any]) -> dg.ExecuteInProcessResult:
    """Materialize one export (and its checks) in-process; fails the test if the run fails."""
    config = write_config(tmp_path / "e.yaml", [entry])
    result = (
        build_definitions(config, production_env)
        .resolve_job_def(ALL_EXPORTS_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success, [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
    return result


def same_float(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or got == want


def test_parquet_keeps_every_value_and_type(production_env: dict, tmp_path: Path, s3: Any, types_table: list):
    table = pq.read_table(io.BytesIO(export(production_env, tmp_path, "parquet", s3)))
    assert table.column_names == list(types_table[0])  # exact names: "Id", "select", "has space"
    assert str(table.schema.field("num").type) == "decimal128(38, 9)"
    assert str(table.schema.field("d").type) == "date32[day]"
    for got, want in zip(table.to_pylist(), types_table, strict=True):
        for column, value in want.items():
            if isinstance(value, float):
                assert same_float(got[column], value), column
            else:
                assert got[column] == value, (column, got[column], value)


def _text(value: Any) -> str | None:
    """What the README's table says CSV and JSON carry, as text, for a source value."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def unit_text(value: Any, separator: str, utc_suffix: str, digits: int = 6) -> str:
    """The README's one form for times and timestamps: the export's unit's fractional digits (six
    for microseconds, the default; nine with timestamp_unit: ns), zoned in UTC."""
    if isinstance(value, dt.time):
        return f"{value:%H:%M:%S}.{value.microsecond * 1000:09d}"[: 9 + digits]
    stamp = pd.Timestamp(value)
    suffix = ""
    if stamp.tzinfo is not None:
        stamp, suffix = stamp.tz_convert("UTC"), utc_suffix
    fraction = f"{stamp.microsecond * 1000 + stamp.nanosecond:09d}"[:digits]
    return f"{stamp:%Y-%m-%d}{separator}{stamp:%H:%M:%S}.{fraction}{suffix}"


def test_csv_carries_every_value(production_env: dict, tmp_path: Path, s3: Any, types_table: list):
    data = export(production_env, tmp_path, "csv", s3)
    lines = data.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(lines)))
    assert list(rows[0]) == list(types_table[0])
    for got, want in zip(rows, types_table, strict=True):
        for column, value in want.items():
            cell = got[column]
            if value is None:
                assert cell == "", column
            elif isinstance(value, float):
                assert same_float(float(cell), value), column  # nan, inf, -inf
            elif isinstance(value, (pd.Timestamp, dt.datetime)):
                assert cell == unit_text(value, " ", "Z"), column
                assert pd.Timestamp(cell) == value, column  # the same instant
            elif column in ("v", "o", "a"):
                assert json.loads(cell) == json.loads(value), column
            elif column == "t":
                assert cell == unit_text(value, " ", "Z"), column
            else:  # text exactly as the source holds it: no formula escaping unless asked for
                assert cell == _text(value), (column, cell, _text(value))
    # NULL and '' stay apart in the raw text: row 2 has '' in "s", row 3 has NULL.
    raw = list(csv.reader(io.StringIO(lines)))
    s = raw[0].index("s")
    assert lines.splitlines()[0].startswith('"Id","num"')
    assert '""' in lines.split("\n2,")[1].split("\n")[0]
    assert raw[2][s] == "" and raw[3][s] == ""  # csv.reader cannot tell them apart ...
    from data_migration.files.formats import FORMATS

    assert FORMATS["csv"].reader.read(io.BytesIO(data)).column("s").to_pylist()[1:3] == ["", None]  # ... ours can


def test_json_lines_carry_every_value(production_env: dict, tmp_path: Path, s3: Any, types_table: list):
    lines = export(production_env, tmp_path, "json", s3).decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert list(rows[0]) == list(types_table[0])
    specials = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
    for got, want in zip(rows, types_table, strict=True):
        for column, value in want.items():
            cell = got[column]
            if value is None:
                assert cell is None, column
            elif isinstance(value, float):
                assert same_float(specials.get(cell, cell), value), column
            elif isinstance(value, (pd.Timestamp, dt.datetime)):
                assert cell == unit_text(value, "T", "+00:00"), column
                assert pd.Timestamp(cell) == value, column
            elif isinstance(value, (int, bool)):
                assert cell == value and type(cell) is type(value), column
            elif column in ("v", "o", "a"):
                assert isinstance(cell, str) and json.loads(cell) == json.loads(value), column
            elif column == "d":
                assert cell == value.isoformat(), column
            elif column == "t":
                assert cell == unit_text(value, "T", "+00:00"), column
            else:
                assert cell == _text(value), (column, cell, _text(value))


def test_json_decimals_number_end_to_end(production_env: dict, tmp_path: Path, s3: Any, types_table: list):
    key = "exports/types/numbers.jsonl"
    entry = {"table": "TYPES", "s3_path": key, "file_type": "json", "query": QUERY, "json_decimals": "number"}
    result = run_export(production_env, tmp_path, entry)
    lines = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    rows = [json.loads(line, parse_float=Decimal) for line in lines]
    assert [row["num"] for row in rows] == [row["num"] for row in types_table]  # NUMBER(38,9), exactly
    assert '"num":-0.000000001,' in lines[1]
    (event,) = result.get_asset_materialization_events()
    assert event.event_specific_data.materialization.metadata["format_options"].value == {"decimals": "number"}


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_empty_result_is_a_valid_file_with_row_count_zero(
    production_env: dict, tmp_path: Path, s3: Any, file_type: str, types_table: list
):
    key = f"exports/empty/data.{file_type}"
    query = "select * from TYPEDB.PUBLIC.TYPES where 1 = 0"
    result = run_export(
        production_env, tmp_path, {"table": "EMPTY", "s3_path": key, "file_type": file_type, "query": query}
    )
    (event,) = result.get_asset_materialization_events()
    assert event.event_specific_data.materialization.metadata["dagster/row_count"].value == 0
    assert all(e.passed for e in result.get_asset_check_evaluations())  # an empty export is a good export
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    names = ["Id", "num", "f", "s", "b", "d", "t", "ntz", "tz", "bin", "v", "o", "a", "select", "has space"]
    if file_type == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == 0 and table.column_names == names
        assert str(table.schema.field("num").type) == "decimal128(38, 9)"  # typed from the description
    elif file_type == "csv":
        assert data.decode() == ",".join(f'"{n}"' for n in names) + "\n"
    else:
        assert data == b""


def test_csv_formula_escaping_can_be_turned_off_and_is_recorded(
    production_env: dict, tmp_path: Path, s3: Any, types_table: list
):
    for escape, expected in ((True, '\'=HYPERLINK("x")'), (False, '=HYPERLINK("x")')):
        key = f"exports/types/escape-{escape}.csv"
        config = write_config(
            tmp_path / "e.yaml",
            [{"table": "TYPES", "s3_path": key, "file_type": "csv", "query": QUERY, "csv_escape_formulas": escape}],
        )
        result = (
            build_definitions(config, production_env)
            .resolve_job_def(ALL_EXPORTS_JOB)
            .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        assert event.event_specific_data.materialization.metadata["format_options"].value == {"escape_formulas": escape}
        rows = list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())))
        assert rows[3]["s"] == expected
        assert rows[1]["num"] == "-0.000000001"  # a negative NUMBER is never escaped


EDGES = (
    "select '+44 20 7946 0958' as PHONE, '-5' as NEG, '@home' as HANDLE, "
    "'2024-01-01 12:00:00.123456'::TIMESTAMP_NTZ as A, '9999-12-31 23:59:59'::TIMESTAMP_NTZ as B, "
    "'0001-01-01 00:00:00'::TIMESTAMP_NTZ as C, '9999-12-31 23:59:59.999999'::TIMESTAMP_NTZ as D"
)


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_one_declared_type_is_one_type_and_text_is_exact(production_env: dict, tmp_path: Path, s3: Any, file_type: str):
    """Issue 33: '2024-01-01 12:00:00.123456' came out as timestamp[ns] and '9999-12-31 23:59:59'
    as timestamp[us] in one result (the type followed the values); CSV wrote '+44 20 7946 0958'
    as "'+44 20 7946 0958". Now one declared type is one type, in microseconds, and CSV is exact."""
    key = f"exports/edges/data.{file_type}"
    run_export(production_env, tmp_path, {"table": "EDGES", "s3_path": key, "file_type": file_type, "query": EDGES})
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    stamps = ["2024-01-01 12:00:00.123456", "9999-12-31 23:59:59.000000", "0001-01-01 00:00:00.000000",
              "9999-12-31 23:59:59.999999"]  # fmt: skip
    if file_type == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert {str(table.schema.field(name).type) for name in "ABCD"} == {"timestamp[us]"}
        assert [str(table.column(name)[0].as_py()) for name in "ABCD"] == [
            "2024-01-01 12:00:00.123456", "9999-12-31 23:59:59", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999",
        ]  # fmt: skip
        assert table.column("PHONE")[0].as_py() == "+44 20 7946 0958"
    elif file_type == "csv":
        (row,) = list(csv.DictReader(io.StringIO(data.decode())))
        assert (row["PHONE"], row["NEG"], row["HANDLE"]) == ("+44 20 7946 0958", "-5", "@home")
        assert [row[name] for name in "ABCD"] == stamps
    else:
        (row,) = [json.loads(line) for line in data.decode().splitlines()]
        assert (row["PHONE"], row["NEG"], row["HANDLE"]) == ("+44 20 7946 0958", "-5", "@home")
        assert [row[name] for name in "ABCD"] == [stamp.replace(" ", "T") for stamp in stamps]
