"""Apache Spark, a reader no one here wrote, reads the exports back (issue 33).

One local Spark session for the module (no UI, no network, UTC) reads every Parquet, CSV and
JSON Lines output of the type table and of TPC-H, and each cell is compared with the source
value; TPC-H Q1 and Q3 run in Spark SQL on the exported files and give the source's answers.

What Spark does with each file is asserted as measured, including what it refuses and what it
needs told: the Parquet TIME column (refused unless `spark.sql.timeType.enabled`), nanosecond
timestamps (refused), and the CSV options that RFC 4180 text, NULL apart from '' and `nan`/`inf`
need. docs/formats.md says the same.

pyspark is a declared test dependency: if it is missing, this module fails to import (no skip).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import fakesnow.server
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampType

from data_migration.definitions import build_definitions
from data_migration.local import emulator
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.exports import test_tpch, test_types
from data_migration_tests.exports.test_types import _text, export, run_export, same_float, unit_text
from data_migration_tests.support import BUCKET, Snowflake, queries, write_config

types_table = test_types.types_table  # the module-scoped fixture, shared rather than copied

# What a user tells Spark the type table's columns are, for the text formats: the declared
# types (formats.md), with BINARY as its hex text. `t` needs spark.sql.timeType.enabled.
TYPES_DDL = (
    "`Id` decimal(38,0), `num` decimal(38,9), `f` double, `s` string, `b` boolean, `d` date, `t` time(6), "
    "`ntz` timestamp_ntz, `tz` timestamp, `bin` string, `v` string, `o` string, `a` string, "
    "`select` string, `has space` string"
)
TIME_TYPE = {"spark.sql.timeType.enabled": "true"}
# RFC 4180 as the exports write it: quoted fields may hold newlines, a quote is doubled.
RFC_4180 = {"header": True, "multiLine": True, "escape": '"'}
# Spark reads an empty field as NULL whether quoted or not, unless `nullValue` is a text no cell
# holds: then an unquoted empty field is NULL and `""` is ''.
NULL_APART = {"nullValue": "\u0000"}
FLOAT_WORDS = {"nanValue": "nan", "positiveInf": "inf", "negativeInf": "-inf"}  # Arrow's words
# An export naming timestamp_unit: us, with NUMBER(38,0) beyond int64. The emulator stores a
# NUMBER(38,0) column as BIGINT (an insert of 12345678901234567890123456789 fails: "Conversion
# Error: Type INT128 ... out of range for the destination type INT64"), so the wide values come
# from TO_NUMBER, which it describes as NUMBER(38,0) and holds exactly.
US_QUERY = (
    'select "Id", "num", "d", "t", "ntz", "tz", "bin", "v", '
    "case \"Id\" when 1 then to_number('12345678901234567890123456789', 38, 0) "
    "when 2 then to_number('-99999999999999999999999999999999999999', 38, 0) "
    "when 4 then to_number('9223372036854775808', 38, 0) end as \"big\" "
    'from TYPEDB.PUBLIC.TYPES order by "Id"'
)
US_DDL = (
    "`Id` decimal(38,0), `num` decimal(38,9), `d` date, `t` time(6), `ntz` timestamp_ntz, `tz` timestamp, "
    "`bin` string, `v` string, `big` decimal(38,0)"
)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    scratch = tmp_path_factory.mktemp("spark")
    with pytest.MonkeyPatch.context() as env:
        if not os.environ.get("JAVA_HOME"):
            java = shutil.which("java")
            assert java, "Spark needs Java 17 or newer: put java on PATH or set JAVA_HOME"
            env.setenv("JAVA_HOME", str(Path(java).resolve().parent.parent))
        env.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        session = (
            SparkSession.builder.master("local[2]")
            .appName("data-migration-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "512m")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.local.dir", str(scratch / "local"))
            .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("OFF")  # the refusals asserted below would log stack traces
        try:
            yield session
        finally:
            session.stop()


@contextlib.contextmanager
def settings(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    for name, value in values.items():
        spark.conf.set(name, value)
    try:
        yield
    finally:
        for name in values:
            spark.conf.unset(name)


def written(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def source_rows(fake_snowflake: Snowflake, query: str) -> list[dict[str, Any]]:
    with fake_snowflake.connect("TYPEDB", "PUBLIC") as conn:
        cursor = conn.cursor()
        cursor.execute(query)
        return cursor.fetch_arrow_all().to_pylist()


def collected(frame: DataFrame) -> list[dict[str, Any]]:
    """The rows in "Id" order, each zoned timestamp as the instant Spark holds (its UTC
    microseconds), not as pyspark's conversion to the Python process's local time."""
    instants = {f.name for f in frame.schema.fields if isinstance(f.dataType, TimestampType)}
    frame = frame.select(
        *[F.unix_micros(column(name)).alias(name) if name in instants else column(name) for name in frame.columns]
    )
    rows = [row.asDict() for row in frame.orderBy(column("Id").cast("decimal(38,0)")).collect()]
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for row in rows:
        for name in instants:
            if row[name] is not None:
                row[name] = epoch + dt.timedelta(microseconds=row[name])
    return rows


def assert_same_values(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Every cell as the source holds it: decimals exact, floats with NaN and infinities, the
    same instant to the microsecond, BINARY as bytes, VARIANT/OBJECT/ARRAY as the same JSON text."""
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want, strict=True):
        assert list(got_row) == list(want_row)
        for column, value in want_row.items():
            cell = got_row[column]
            if value is None or cell is None:
                assert cell is None and value is None, (want_row["Id"], column, cell, value)
            elif isinstance(value, float):
                assert same_float(cell, value), (column, cell, value)
            elif isinstance(value, bytes):
                assert bytes(cell) == value, (column, cell, value)
            else:  # Decimal (int in the source for NUMBER(38,0)), str, bool, date, time, datetimes
                assert type(cell) is not float and cell == value, (want_row["Id"], column, cell, value)


def with_bytes(frame: DataFrame, *names: str) -> DataFrame:
    """The text formats' BINARY (upper-case hex) as bytes, with Spark's own unhex."""
    return frame.select(*[F.unhex(column(n)).alias(n) if n in names else column(n) for n in frame.columns])


def column(name: str) -> Any:
    return F.col(f"`{name}`")  # names such as "has space" and "select", quoted as Spark quotes them


# The type table


def test_parquet_of_the_type_table(
    spark: SparkSession, production_env: dict, tmp_path: Path, s3: Any, types_table: list
):
    path = written(tmp_path, "types.parquet", export(production_env, tmp_path, "parquet", s3))
    # Spark 4 has a TIME type, off by default: the whole file is refused, even a select of
    # another column; a schema without the column reads the rest.
    with pytest.raises(AnalysisException, match=r"^\[UNSUPPORTED_TIME_TYPE\] The data type TIME is not supported"):
        spark.read.parquet(path).select("Id").collect()
    without_time = spark.read.schema(TYPES_DDL.replace(" `t` time(6),", "").replace("`bin` string", "`bin` binary"))
    assert_same_values(
        collected(without_time.parquet(path)), [{k: v for k, v in row.items() if k != "t"} for row in types_table]
    )

    with settings(spark, TIME_TYPE):
        frame = spark.read.parquet(path)
        assert frame.columns == list(types_table[0])  # exact names: "Id", "select", "has space"
        assert frame.schema.simpleString() == (
            "struct<Id:decimal(38,0),num:decimal(38,9),f:double,s:string,b:boolean,d:date,t:time(6),"
            "ntz:timestamp_ntz,tz:timestamp,bin:binary,v:string,o:string,a:string,select:string,has space:string>"
        )
        assert_same_values(collected(frame), types_table)


def test_csv_of_the_type_table(spark: SparkSession, production_env: dict, tmp_path: Path, s3: Any, types_table: list):
    path = written(tmp_path, "types.csv", export(production_env, tmp_path, "csv", s3))

    # With only `header`, Spark splits the quoted newline of row 1 into a record of its own.
    naive = spark.read.option("header", True).csv(path).collect()
    assert len(naive) == 5 and naive[0]["s"] == '"emoji 🎉, ""quoted""'  # cut at the comma inside the quotes
    assert naive[1]["Id"] == types_table[0]["s"].split("\n")[1] + '"'  # the rest of row 1 became a record

    # RFC 4180 options, every column as text: each cell is the README's text for the source
    # value, but '' comes back as NULL too ...
    text = collected(spark.read.options(**RFC_4180).csv(path))
    assert [row["s"] for row in text] == [types_table[0]["s"], None, None, '=HYPERLINK("x")']
    # ... unless nullValue is a text no cell holds: then an unquoted empty field is NULL and "" is ''.
    text = collected(spark.read.options(**RFC_4180, **NULL_APART).csv(path))
    for got, want in zip(text, types_table, strict=True):
        for column, value in want.items():
            if isinstance(value, float):
                expected = {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
            elif column in ("t", "ntz", "tz") and value is not None:
                expected = unit_text(value, " ", "Z")
            else:
                expected = _text(value)
            assert got[column] == expected, (want["Id"], column, got[column], expected)

    # Typed with the declared types: without Arrow's words for NaN and the infinities a double
    # column reads them as NULL (PERMISSIVE, the default) or fails the read (FAILFAST).
    typed = spark.read.options(**RFC_4180, **NULL_APART).schema(TYPES_DDL.replace("`t` time(6)", "`t` string"))
    assert [row["f"] for row in typed.csv(path).orderBy("Id").collect()] == [1.5, None, None, None]
    with pytest.raises(Py4JJavaError) as refused:
        typed.option("mode", "FAILFAST").csv(path).collect()
    assert "[MALFORMED_RECORD_IN_PARSING.WITHOUT_SUGGESTION] Malformed records are detected in record parsing: [2," in (
        str(refused.value)
    )
    assert 'java.lang.NumberFormatException: For input string: "nan"' in str(refused.value)
    with settings(spark, TIME_TYPE):
        frame = spark.read.options(**RFC_4180, **NULL_APART, **FLOAT_WORDS, mode="FAILFAST").schema(TYPES_DDL)
        assert_same_values(collected(with_bytes(frame.csv(path), "bin")), types_table)


def test_json_lines_of_the_type_table(
    spark: SparkSession, production_env: dict, tmp_path: Path, s3: Any, types_table: list
):
    path = written(tmp_path, "types.jsonl", export(production_env, tmp_path, "json", s3))

    # Inferred: Spark sorts the columns by name; numbers are bigint, decimals and every other
    # value strings as the README says, FLOAT as text once "NaN" sits in the column.
    frame = spark.read.json(path)
    assert frame.schema.simpleString() == (
        "struct<Id:bigint,a:string,b:boolean,bin:string,d:string,f:string,has space:string,ntz:string,"
        "num:string,o:string,s:string,select:string,t:string,tz:string,v:string>"
    )
    words = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
    for got, want in zip(collected(frame), types_table, strict=True):
        for column, value in want.items():
            if isinstance(value, (bool, int)) or value is None:
                expected = value
            elif isinstance(value, float):
                expected = words.get(str(value), repr(value))
            elif column in ("t", "ntz", "tz"):
                expected = unit_text(value, "T", "+00:00")
            elif column == "d":
                expected = value.isoformat()
            else:
                expected = _text(value)
            assert got[column] == expected, (want["Id"], column, got[column], expected)

    # Typed with the declared types: decimals from their exact text, "NaN"/"Infinity" as doubles.
    with settings(spark, TIME_TYPE):
        frame = spark.read.schema(TYPES_DDL).option("mode", "FAILFAST").json(path)
        assert_same_values(collected(with_bytes(frame, "bin")), types_table)


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_timestamp_unit_us_and_number_beyond_int64(
    spark: SparkSession, production_env: dict, fake_snowflake: Snowflake, tmp_path: Path, s3: Any, file_type: str
):
    key = f"exports/us/data.{file_type}"
    entry = {"table": "US", "s3_path": key, "file_type": file_type, "query": US_QUERY, "timestamp_unit": "us"}
    run_export(production_env, tmp_path, entry)
    path = written(tmp_path, f"us.{file_type}", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    want = source_rows(fake_snowflake, US_QUERY)
    assert [row["big"] for row in want] == [
        12345678901234567890123456789,
        -99999999999999999999999999999999999999,
        None,
        9223372036854775808,
    ]
    with settings(spark, TIME_TYPE):
        if file_type == "parquet":
            frame = spark.read.parquet(path)
            assert frame.schema.simpleString() == (
                "struct<Id:decimal(38,0),num:decimal(38,9),d:date,t:time(6),ntz:timestamp_ntz,tz:timestamp,"
                "bin:binary,v:string,big:decimal(38,0)>"
            )
        elif file_type == "csv":
            frame = with_bytes(
                spark.read.options(**RFC_4180, **NULL_APART, mode="FAILFAST").schema(US_DDL).csv(path), "bin"
            )
        else:
            frame = with_bytes(spark.read.schema(US_DDL).option("mode", "FAILFAST").json(path), "bin")
        assert_same_values(collected(frame), want)


def test_timestamp_unit_ns_is_refused_by_spark(
    spark: SparkSession, production_env: dict, fake_snowflake: Snowflake, tmp_path: Path, s3: Any
):
    """The issue as reported: Parquet TIMESTAMP(NANOS) (now only with timestamp_unit: ns)."""
    query = 'select "Id", "ntz", "tz" from TYPEDB.PUBLIC.TYPES order by "Id"'
    key = "exports/ns/data.parquet"
    run_export(
        production_env,
        tmp_path,
        {"table": "NS", "s3_path": key, "file_type": "parquet", "query": query, "timestamp_unit": "ns"},
    )
    path = written(tmp_path, "ns.parquet", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    with pytest.raises(
        AnalysisException, match=r"^\[PARQUET_TYPE_ILLEGAL\] Illegal Parquet type: INT64 \(TIMESTAMP\(NANOS,false\)\)"
    ):
        spark.read.parquet(path).collect()
    # Spark's escape hatch reads them as bigint nanoseconds since the epoch.
    with settings(spark, {"spark.sql.legacy.parquet.nanosAsLong": "true"}):
        frame = spark.read.parquet(path)
        assert frame.schema.simpleString() == "struct<Id:decimal(38,0),ntz:bigint,tz:bigint>"
        rows = frame.orderBy("Id").collect()
    want = source_rows(fake_snowflake, query)
    assert [(row["ntz"], row["tz"]) for row in rows] == [(r["ntz"].value, r["tz"].value) for r in want]


# TPC-H


def spark_type(snowflake_type: str) -> str:
    """The Spark type of a declared Snowflake type, as formats.md maps it to Parquet."""
    if snowflake_type.startswith("NUMBER("):
        precision, scale = (int(n) for n in snowflake_type[7:-1].split(","))
        return "bigint" if scale == 0 and precision <= 18 else f"decimal({precision},{scale})"
    return {"DATE": "date", "VARCHAR": "string"}[snowflake_type]


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_tpch_q1_and_q3_in_spark_sql(
    spark: SparkSession, production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, file_type: str
):
    exports = [
        {"table": t, "s3_path": f"exports/{t.lower()}/data.{file_type}", "file_type": file_type}
        for t in test_tpch.TABLES
    ]
    result = (
        build_definitions(write_config(tmp_path / "e.yaml", exports), production_env)
        .resolve_job_def(ALL_EXPORTS_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success
    declared = {
        e.asset_key.to_user_string(): ", ".join(
            f"`{c.name}` {spark_type(c.type)}"
            for c in e.event_specific_data.materialization.metadata["dagster/column_schema"].value.columns
        )
        for e in result.get_asset_materialization_events()
    }

    source_db = fakesnow.server.shared_fs.duck_conn.cursor()
    for table in test_tpch.TABLES:
        data = s3.get_object(Bucket=BUCKET, Key=f"exports/{table.lower()}/data.{file_type}")["Body"].read()
        path = written(tmp_path, f"{table}.{file_type}", data)
        if file_type == "parquet":  # the types Spark finds in the file are the declared ones
            frame = spark.read.parquet(path)
            assert frame.schema == spark.read.schema(declared[table]).parquet(path).schema
        elif file_type == "csv":
            frame = spark.read.options(**RFC_4180, **NULL_APART, mode="FAILFAST").schema(declared[table]).csv(path)
        else:
            frame = spark.read.schema(declared[table]).option("mode", "FAILFAST").json(path)
        (count,) = source_db.execute(f"select count(*) from {emulator.DATABASE}.{emulator.SCHEMA}.{table}").fetchone()
        assert frame.count() == count
        frame.createOrReplaceTempView(table.lower())

    (newest,) = source_db.execute(
        f"select max(O_ORDERDATE) from {emulator.DATABASE}.{emulator.SCHEMA}.ORDERS"
    ).fetchone()
    shift = (newest - emulator.TPCH_LAST_ORDER_DATE).days
    expected = test_tpch.answers(
        source_db, {t: f"{emulator.DATABASE}.{emulator.SCHEMA}.{t}" for t in test_tpch.TABLES}, shift
    )
    got = {name: [tuple(row) for row in spark.sql(sql).collect()] for name, sql in queries(shift).items()}

    assert len(expected["Q1"]) == 4 and sum(row[-1] for row in expected["Q1"]) > 50_000  # real work was done
    assert len(got["Q1"]) == len(expected["Q1"]) and len(got["Q3"]) == len(expected["Q3"]) == 10
    for name in ("Q1", "Q3"):
        for got_row, want_row in zip(got[name], expected[name], strict=True):
            for cell, value in zip(got_row, want_row, strict=True):
                if isinstance(value, float):  # DuckDB's AVG of a decimal is a double; Spark's, decimal(p+4, s+4)
                    rounded = isinstance(cell, Decimal) and abs(cell - Decimal(value)) <= Decimal("0.0000005")
                    assert rounded, (name, cell, value)
                else:  # sums exact: decimal in both
                    assert cell == value, (name, cell, value)
