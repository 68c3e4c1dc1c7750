"""The readers in this package (DuckDB 1.5.5's iceberg and delta extensions, and chDB 4.4.0) read
tables that pyiceberg and deltalake write to moto, value by value and type by type.

Each table holds one column of each type the exports produce (int64, decimal128(38,0),
decimal128(38,9), float64, string, binary, bool, date32, timestamp[us], timestamp[us, UTC],
time64[us]; Delta has no TIME), with edge values and a row of NULLs, written in two commits so that
time travel to the first one can be checked. The types each reader reports are asserted as
measured: they are what a test of the project's own Iceberg or Delta output can expect. Tables are
read by metadata file and by folder (with and without a version-hint.text), at older snapshots and
versions, and TPC-H Q1 runs over an Iceberg and a Delta lineitem through query(tables=...).

Also here: what DuckDB's S3 secret needs, what deltalake sends to commit on S3 (If-None-Match: *,
no setting needed), that two writers racing for one version conflict as on S3 once moto's
check-then-write is serialized, that moto's conditional put is not atomic by itself, and that two
processes creating the reader venv at once create it once.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import deltalake
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.s3.exceptions import PreconditionFailed
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField
from pyiceberg.transforms import DayTransform

from data_migration_tests import readers
from data_migration_tests.support import queries

BUCKET = "readers"
UTC = dt.UTC
MAX_38 = 10**38 - 1

SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("d0", pa.decimal128(38, 0)),
        ("d9", pa.decimal128(38, 9)),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("b", pa.binary()),
        ("ok", pa.bool_()),
        ("dt", pa.date32()),
        ("ts", pa.timestamp("us")),
        ("tstz", pa.timestamp("us", tz="UTC")),
        ("tm", pa.time64("us")),
    ]
)
NULLS = dict.fromkeys(SCHEMA.names)
FIRST = [  # the first commit
    {
        "i": 1,
        "d0": Decimal(MAX_38),
        "d9": Decimal("99999999999999999999999999999.999999999"),
        "f": 1.5,
        "s": "a",
        "b": b"\x00\xff",
        "ok": True,
        "dt": dt.date(2024, 1, 1),
        "ts": dt.datetime(2024, 1, 1, 12, 0, 0, 1),
        "tstz": dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=UTC),
        "tm": dt.time(23, 59, 59, 999999),
    },
    {
        "i": -(2**63),
        "d0": Decimal(-MAX_38),
        "d9": Decimal("-0.000000001"),
        "f": -0.0,
        "s": "é\n\"'😀",
        "b": b"",
        "ok": False,
        "dt": dt.date(1, 1, 1),
        "ts": dt.datetime(1900, 1, 1),  # before the epoch: a negative day(ts) partition
        "tstz": dt.datetime(1900, 1, 1, tzinfo=UTC),
        "tm": dt.time(0, 0),
    },
    {
        "i": 2**63 - 1,
        "d0": Decimal(0),
        "d9": Decimal("0.000000000"),
        "f": math.nan,
        "s": "",
        "b": b"\x00",
        "ok": True,
        "dt": dt.date(9999, 12, 31),
        "ts": dt.datetime(2024, 1, 2, 23, 59, 59, 999999),
        "tstz": dt.datetime(2024, 1, 2, 23, 59, 59, 999999, tzinfo=UTC),
        "tm": dt.time(12, 34, 56, 1),
    },
    NULLS,
]
SECOND = [  # the second commit
    {
        "i": 5,
        "d0": Decimal(-1),
        "d9": Decimal("12345678901234567890123456789.123456789"),
        "f": math.inf,
        "s": " ",
        "b": bytes(range(256)),
        "ok": False,
        "dt": dt.date(1970, 1, 1),
        "ts": dt.datetime(2024, 1, 2),
        "tstz": dt.datetime(2024, 1, 2, tzinfo=UTC),
        "tm": dt.time(0, 0, 0, 1),
    }
]
DELTA_COLUMNS = [name for name in SCHEMA.names if name != "tm"]  # Delta Lake has no TIME type

# The types the tables hold, as pyiceberg and deltalake write SCHEMA.
ICEBERG_TYPES = {
    "i": "long",
    "d0": "decimal(38, 0)",
    "d9": "decimal(38, 9)",
    "f": "double",
    "s": "string",
    "b": "binary",
    "ok": "boolean",
    "dt": "date",
    "ts": "timestamp",
    "tstz": "timestamptz",
    "tm": "time",
}
DELTA_LOG_TYPES = {
    **{name: ICEBERG_TYPES[name].replace(", ", ",") for name in DELTA_COLUMNS},
    "ts": "timestamp_ntz",
    "tstz": "timestamp",
}
# What DuckDB 1.5.5 reports (DESCRIBE) for each column, from Iceberg and from Delta; its Arrow
# answer has exactly the written Arrow types (SCHEMA).
DUCKDB_TYPES = {
    "i": "BIGINT",
    "d0": "DECIMAL(38,0)",
    "d9": "DECIMAL(38,9)",
    "f": "DOUBLE",
    "s": "VARCHAR",
    "b": "BLOB",
    "ok": "BOOLEAN",
    "dt": "DATE",
    "ts": "TIMESTAMP",
    "tstz": "TIMESTAMP WITH TIME ZONE",
    "tm": "TIME",
}
# chDB 4.4.0 (ClickHouse 26.9): String for both text and binary (binary in its Arrow answer), a
# naive timestamp as DateTime64(6) that its Arrow answer marks as UTC, Iceberg's `time` as Int64
# whole seconds (the microseconds are lost), and Delta's UTC timestamp without its 'UTC'.
CHDB_ICEBERG_TYPES = {
    "i": "Nullable(Int64)",
    "d0": "Nullable(Decimal(38, 0))",
    "d9": "Nullable(Decimal(38, 9))",
    "f": "Nullable(Float64)",
    "s": "Nullable(String)",
    "b": "Nullable(String)",
    "ok": "Nullable(Bool)",
    "dt": "Nullable(Date32)",
    "ts": "Nullable(DateTime64(6))",
    "tstz": "Nullable(DateTime64(6, 'UTC'))",
    "tm": "Nullable(Int64)",
}
CHDB_DELTA_TYPES = {
    **{name: CHDB_ICEBERG_TYPES[name] for name in DELTA_COLUMNS},
    "tstz": "Nullable(DateTime64(6))",
}
CHDB_ARROW = {
    "s": pa.binary(),
    "ts": pa.timestamp("us", tz="UTC"),  # the session_timezone (the default would be Etc/UTC)
    "tstz": pa.timestamp("us", tz="UTC"),
    "tm": pa.int64(),
}


def arrow_types(schema: pa.Schema) -> dict[str, str]:
    return {field.name: str(field.type) for field in schema}


def ordered(rows: list[dict[str, Any]], columns: list[str] = SCHEMA.names) -> list[dict[str, Any]]:
    """As `ORDER BY i` gives them (NULLS LAST is the default of both readers)."""
    rows = sorted(rows, key=lambda row: (row["i"] is None, row["i"] or 0))
    return [{name: row[name] for name in columns} for row in rows]


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected):
            return math.isnan(actual)
        return actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
    return type(actual) is type(expected) and actual == expected if expected is not None else actual is None


def assert_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected)
    for number, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert list(got) == list(want)
        for name in want:
            assert same(got[name], want[name]), f"row {number}, {name}: {got[name]!r} != {want[name]!r}"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader() -> Path:
    """The reader venv (one-off install, about 20 s; reused afterwards)."""
    return readers.ensure_reader_venv()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto of this module's own (the suite's `s3` fixture resets the shared one)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client(url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def client(url: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def delta_options(url: str) -> dict[str, str]:
    # No conditional-put setting: deltalake 1.6.6 sends If-None-Match: * on every commit by
    # default (test_deltalake_commits_with_if_none_match), and moto honours it.
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


@pytest.fixture(scope="module")
def catalog(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> SqlCatalog:
    """pyiceberg's SQL catalog (SQLite) over the bucket, with the namespace "ns"."""
    catalog = SqlCatalog(
        "readers",
        uri=f"sqlite:///{tmp_path_factory.mktemp('iceberg') / 'catalog.db'}",
        warehouse=f"s3://{BUCKET}/lake",
        **{
            "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
            "s3.endpoint": endpoint,
            "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing",
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": False,
        },
    )
    catalog.create_namespace("ns")
    return catalog


@pytest.fixture(scope="module")
def iceberg(catalog: SqlCatalog) -> dict[str, dict[str, Any]]:
    """Two tables, unpartitioned and by day(ts), each FIRST then SECOND: metadata files, snapshots."""
    tables = {}
    for name, partitioned in (("plain", False), ("daily", True)):
        table = catalog.create_table(f"ns.{name}", schema=SCHEMA)
        if partitioned:
            with table.update_spec() as update:
                update.add_field("ts", DayTransform(), "ts_day")
            day = PartitionField(table.schema().find_field("ts").field_id, 1000, DayTransform(), "ts_day")
            assert table.spec().fields == (day,)
        table.append(pa.Table.from_pylist(FIRST, SCHEMA))
        first = {"metadata": table.metadata_location, "snapshot": table.current_snapshot()}
        time.sleep(0.01)  # the snapshots' timestamp_ms differ
        table.append(pa.Table.from_pylist(SECOND, SCHEMA))
        assert {field.name: str(field.field_type) for field in table.schema().fields} == ICEBERG_TYPES
        tables[name] = {
            "location": table.location(),
            "metadata": table.metadata_location,
            "first_metadata": first["metadata"],
            "first_snapshot": first["snapshot"],
            "snapshot": table.current_snapshot(),
        }
    return tables


@pytest.fixture(scope="module")
def delta(endpoint: str) -> str:
    """A Delta table: version 0 holds FIRST, version 1 adds SECOND (without the TIME column)."""
    uri = f"s3://{BUCKET}/delta/t"
    schema = pa.schema([SCHEMA.field(name) for name in DELTA_COLUMNS])
    deltalake.write_deltalake(uri, pa.Table.from_pylist(FIRST, schema), storage_options=delta_options(endpoint))
    deltalake.write_deltalake(
        uri, pa.Table.from_pylist(SECOND, schema), storage_options=delta_options(endpoint), mode="append"
    )
    table = deltalake.DeltaTable(uri, storage_options=delta_options(endpoint))
    assert table.version() == 1
    # what the readers below read: Delta's timestamp_ntz (naive) and timestamp (UTC instant)
    assert {field.name: field.type.type for field in table.schema().fields} == DELTA_LOG_TYPES
    assert table.protocol().reader_features == ["timestampNtz"]
    return uri


# --- DuckDB on Iceberg ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "daily"])
def test_duckdb_reads_every_iceberg_value_and_type(
    reader: Path, endpoint: str, iceberg: dict[str, dict[str, Any]], name: str
) -> None:
    result = readers.read_iceberg(iceberg[name]["metadata"], endpoint, order_by="i")
    assert result.versions["duckdb"] == "1.5.5"
    assert result.types == DUCKDB_TYPES
    assert arrow_types(result.table.schema) == arrow_types(SCHEMA)
    assert_rows(result.rows(), ordered(FIRST + SECOND))
    # result.types is what DESCRIBE says
    described = readers.query(f"DESCRIBE {result.sql}", endpoint).rows()
    assert {row["column_name"]: row["column_type"] for row in described} == result.types


def test_duckdb_reads_iceberg_partitions_by_day(
    reader: Path, endpoint: str, iceberg: dict[str, dict[str, Any]]
) -> None:
    metadata = iceberg["daily"]["metadata"]
    files = readers.query(
        f"SELECT file_path, record_count FROM iceberg_metadata('{metadata}') ORDER BY file_path", endpoint
    ).rows()
    # one data file per day and commit: 2024-01-01, 1900-01-01, 2024-01-02 and NULL, then 2024-01-02
    assert sorted(row["record_count"] for row in files) == [1, 1, 1, 1, 1]
    assert {row["file_path"].split("/data/")[1].split("/")[0] for row in files} == {
        "ts_day=2024-01-01",
        "ts_day=1900-01-01",
        "ts_day=2024-01-02",
        "ts_day=null",
    }
    day = readers.read_iceberg(metadata, endpoint, columns="i", where="ts >= TIMESTAMP '2024-01-02'", order_by="i")
    assert day.rows() == [{"i": 5}, {"i": 2**63 - 1}]
    none = readers.read_iceberg(metadata, endpoint, columns="i, ts", where="ts IS NULL")
    assert none.rows() == [{"i": None, "ts": None}]


@pytest.mark.parametrize("name", ["plain", "daily"])
def test_duckdb_reads_older_iceberg_snapshots(
    reader: Path, endpoint: str, iceberg: dict[str, dict[str, Any]], name: str
) -> None:
    table = iceberg[name]
    first = ordered(FIRST)
    # the metadata file written by the first commit
    assert_rows(readers.read_iceberg(table["first_metadata"], endpoint, order_by="i").rows(), first)
    # the newest metadata file, at the first snapshot: by id and by time
    by_id = readers.read_iceberg(
        table["metadata"], endpoint, snapshot=table["first_snapshot"].snapshot_id, order_by="i"
    )
    assert_rows(by_id.rows(), first)
    at = dt.datetime.fromtimestamp(table["first_snapshot"].timestamp_ms / 1000, UTC)
    assert_rows(readers.read_iceberg(table["metadata"], endpoint, snapshot=at, order_by="i").rows(), first)
    snapshots = readers.query(
        f"SELECT snapshot_id, sequence_number FROM iceberg_snapshots('{table['metadata']}') ORDER BY sequence_number",
        endpoint,
    )
    assert snapshots.types == {"snapshot_id": "UBIGINT", "sequence_number": "UBIGINT"}
    assert [row["snapshot_id"] for row in snapshots.rows()] == [
        table["first_snapshot"].snapshot_id,
        table["snapshot"].snapshot_id,
    ]


def test_an_iceberg_folder_reads_as_its_newest_metadata_file(
    reader: Path, endpoint: str, iceberg: dict[str, dict[str, Any]]
) -> None:
    """read_iceberg of a table folder: pyiceberg's SqlCatalog writes no metadata/version-hint.text,
    which DuckDB's iceberg_scan of a folder wants (measured refusal, below); read_iceberg then
    turns on DuckDB's unsafe_enable_version_guessing (the highest NNNNN- of the metadata files),
    which needs the folder without a trailing slash. chDB picks the newest by itself."""
    location = iceberg["plain"]["location"]
    with pytest.raises(readers.ReaderError, match="no version-hint could be found"):
        readers.query(f"SELECT count(*) AS n FROM iceberg_scan('{location}')", endpoint)
    with pytest.raises(readers.ReaderError, match="Could not guess Iceberg table version"):
        readers.query(
            f"SELECT count(*) AS n FROM iceberg_scan('{location}/')",
            endpoint,
            settings={"unsafe_enable_version_guessing": True},
        )
    for engine in ("duckdb", "chdb"):
        for folder in (location, location + "/"):
            newest = readers.read_iceberg(folder, endpoint, columns="count(*) AS n", engine=engine)
            assert list(newest.rows()[0].values()) == [len(FIRST) + len(SECOND)], (engine, folder)


def test_an_iceberg_folder_with_a_version_hint_reads_as_the_hint_says(
    reader: Path, endpoint: str, iceberg: dict[str, dict[str, Any]], catalog: SqlCatalog
) -> None:
    """DuckDB reads the metadata file that metadata/version-hint.text names (tried as
    v<hint>.metadata.json and <hint>.metadata.json), even with version guessing on; chDB 4.4.0
    ignores the hint (ClickHouse's iceberg_use_version_hint is off by default) and reads the
    newest."""
    table = catalog.create_table("ns.hinted", schema=pa.schema([("a", pa.int64())]))
    table.append(pa.table({"a": [1]}))
    first = table.metadata_location
    table.append(pa.table({"a": [2]}))
    bucket, key = table.location().removeprefix("s3://").split("/", 1)
    hint = first.rsplit("/", 1)[1].removesuffix(".metadata.json")
    client(endpoint).put_object(Bucket=bucket, Key=f"{key}/metadata/version-hint.text", Body=hint.encode())
    assert readers.read_iceberg(table.location(), endpoint, order_by="a").rows() == [{"a": 1}]
    assert readers.read_iceberg(table.location(), endpoint, order_by="a", engine="chdb").rows() == [{"a": 1}, {"a": 2}]


# --- DuckDB on Delta --------------------------------------------------------------------------


def test_duckdb_reads_every_delta_value_and_type(reader: Path, endpoint: str, delta: str) -> None:
    result = readers.read_delta(delta, endpoint, order_by="i")
    assert result.types == {name: DUCKDB_TYPES[name] for name in DELTA_COLUMNS}
    assert arrow_types(result.table.schema) == {name: str(SCHEMA.field(name).type) for name in DELTA_COLUMNS}
    assert_rows(result.rows(), ordered(FIRST + SECOND, DELTA_COLUMNS))


def test_duckdb_reads_an_older_delta_version(reader: Path, endpoint: str, delta: str) -> None:
    assert_rows(readers.read_delta(delta, endpoint, version=0, order_by="i").rows(), ordered(FIRST, DELTA_COLUMNS))
    assert len(readers.read_delta(delta, endpoint, version=1).rows()) == len(FIRST) + len(SECOND)
    with pytest.raises(readers.ReaderError):
        readers.read_delta(delta, endpoint, version=2)


def test_delta_lake_has_no_time_type(tmp_path: Path) -> None:
    # deltalake raises a bare Exception ("External error: Schema error: ...")
    with pytest.raises(Exception, match=r"Invalid data type for Delta Lake: Time64"):
        deltalake.write_deltalake(tmp_path / "t", pa.table({"tm": pa.array([dt.time(1)], pa.time64("us"))}))


def test_duckdb_delta_needs_use_ssl_false_and_path_style(reader: Path, endpoint: str, delta: str) -> None:
    """What the S3 secret in reader_script.py needs, measured: the Delta log is read by the delta
    extension's own object store, which takes the endpoint and USE_SSL from the secret; the data
    files by httpfs, which also needs URL_STYLE 'path' and an ENDPOINT without the scheme."""
    host = endpoint.removeprefix("http://")
    base = f"TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', ENDPOINT '{host}'"
    sql = f"SELECT count(*) AS n FROM delta_scan('{delta}')"
    with pytest.raises(readers.ReaderError, match=r"https://127\.0\.0\.1"):  # the log over https
        readers.query(sql, setup=[f"CREATE SECRET s ({base}, URL_STYLE 'path')"])
    with pytest.raises(readers.ReaderError, match=rf"http://{BUCKET}\.127\.0\.0\.1"):  # a data file, virtual-hosted
        readers.query(sql, setup=[f"CREATE SECRET s ({base}, USE_SSL false)"])
    with pytest.raises(readers.ReaderError, match=r"'http://http://127\.0\.0\.1"):  # httpfs adds a scheme
        readers.query(sql, setup=[f"CREATE SECRET s ({base.replace(host, endpoint)}, URL_STYLE 'path', USE_SSL false)"])
    worked = readers.query(sql, setup=[f"CREATE SECRET s ({base}, URL_STYLE 'path', USE_SSL false)"])
    assert worked.rows() == [{"n": len(FIRST) + len(SECOND)}]


# --- TPC-H Q1 over a table ----------------------------------------------------------------------

Q1_DUCKDB_TYPES = {
    "l_returnflag": "VARCHAR",
    "l_linestatus": "VARCHAR",
    "sum_qty": "DECIMAL(38,2)",
    "sum_base_price": "DECIMAL(38,2)",
    "sum_disc_price": "DECIMAL(38,4)",
    "sum_charge": "DECIMAL(38,6)",
    "avg_qty": "DOUBLE",
    "avg_price": "DOUBLE",
    "avg_disc": "DOUBLE",
    "count_order": "BIGINT",
}
Q1_CHDB_TYPES = {
    **dict.fromkeys(("l_returnflag", "l_linestatus"), "String"),
    "sum_qty": "Decimal(38, 2)",
    "sum_base_price": "Decimal(38, 2)",
    "sum_disc_price": "Decimal(38, 4)",
    "sum_charge": "Decimal(38, 6)",
    **dict.fromkeys(("avg_qty", "avg_price", "avg_disc"), "Float64"),
    "count_order": "UInt64",
}


@pytest.fixture(scope="module")
def lineitem(tpch_dir: Path) -> pa.Table:
    """TPC-H lineitem at SF0.01 (tpchgen-cli's, 60175 rows), its string_view columns as string."""
    table = pq.read_table(tpch_dir / "lineitem.parquet")
    fields = [pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable) for f in table.schema]
    return table.cast(pa.schema(fields))


@pytest.fixture(scope="module")
def lake_lineitem(endpoint: str, catalog: SqlCatalog, lineitem: pa.Table) -> dict[str, readers.LakeTable]:
    """lineitem written as an Iceberg table (pyiceberg) and as a Delta table (deltalake)."""
    table = catalog.create_table("ns.lineitem", schema=lineitem.schema)
    table.append(lineitem)
    delta_uri = f"s3://{BUCKET}/delta/lineitem"
    deltalake.write_deltalake(delta_uri, lineitem, storage_options=delta_options(endpoint))
    return {"iceberg": readers.iceberg_table(table.location()), "delta": readers.delta_table(delta_uri)}


def assert_q1(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Decimals and counts exactly; averages (DOUBLE) to 1e-14: DuckDB 1.5.5 and 2.0 round
    avg(decimal) differently in the last bit (measured: 38432.678052667114 against ...12)."""
    assert [list(row) for row in actual] == [list(row) for row in expected]
    for got, want in zip(actual, expected, strict=True):
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-14, abs=0), name
            else:
                assert type(got[name]) is type(value) and got[name] == value, name


@pytest.mark.parametrize("kind", ["iceberg", "delta"])
def test_tpch_q1_over_a_table(
    reader: Path, endpoint: str, lineitem: pa.Table, lake_lineitem: dict[str, readers.LakeTable], kind: str
) -> None:
    """query(Q1, tables={"lineitem": ...}) runs TPC-H Q1 as written over the table: DuckDB 1.5.5
    answers as the project's DuckDB 2.0 does over the same rows in memory, and so does chDB (its
    strings as bytes, its count as UInt64)."""
    q1 = queries(0)["Q1"]
    memory = duckdb.connect()
    memory.register("lineitem", lineitem)
    expected = memory.sql(q1).to_arrow_table().to_pylist()
    assert len(expected) == 4 and sum(row["count_order"] for row in expected) > 50_000
    result = readers.query(q1, endpoint, tables={"lineitem": lake_lineitem[kind]})
    assert result.types == Q1_DUCKDB_TYPES
    assert_q1(result.rows(), expected)
    chdb = readers.query(q1, endpoint, tables={"lineitem": lake_lineitem[kind]}, engine="chdb")
    assert chdb.types == Q1_CHDB_TYPES
    rows = chdb.rows()
    for row in rows:
        for name in ("l_returnflag", "l_linestatus"):
            row[name] = row[name].decode()
    assert_q1(rows, expected)


# --- deltalake's commits on moto --------------------------------------------------------------


@pytest.fixture
def log_puts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, int]]:
    """(key, If-None-Match, status) of every PUT to a _delta_log, as moto (in this process) sees it."""
    puts: list[tuple[str, str | None, int]] = []
    original = S3Response.put_object

    def recorded(self: S3Response) -> Any:
        if "/_delta_log/" not in self.path:
            return original(self)
        key = self.path.split("?")[0]
        try:
            answer = original(self)
        except PreconditionFailed:
            puts.append((key, self.headers.get("If-None-Match"), 412))
            raise
        puts.append((key, self.headers.get("If-None-Match"), 200))
        return answer

    monkeypatch.setattr(S3Response, "put_object", recorded)
    return puts


@pytest.mark.parametrize("setting", [{}, {"aws_conditional_put": "etag"}], ids=["default", "etag"])
def test_deltalake_commits_with_if_none_match(
    endpoint: str, log_puts: list[tuple[str, str | None, int]], setting: dict[str, str]
) -> None:
    uri = f"s3://{BUCKET}/delta/commits-{len(setting)}"
    options = {**delta_options(endpoint), **setting}
    deltalake.write_deltalake(uri, pa.table({"a": [1]}), storage_options=options)
    deltalake.write_deltalake(uri, pa.table({"a": [2]}), storage_options=options, mode="append")
    prefix = f"/{BUCKET}/delta/commits-{len(setting)}/_delta_log/"
    assert log_puts == [
        (f"{prefix}00000000000000000000.json", "*", 200),
        (f"{prefix}00000000000000000001.json", "*", 200),
    ]


def test_two_delta_writers_racing_for_one_version_conflict(
    endpoint: str, log_puts: list[tuple[str, str | None, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both writers reach the PUT of version 1 together; moto (serialized, as S3 is atomic) lets
    one in and answers 412 to the other, which deltalake retries as version 2: nothing is lost."""
    uri = f"s3://{BUCKET}/delta/race"
    deltalake.write_deltalake(uri, pa.table({"a": [0]}), storage_options=delta_options(endpoint))
    both_there = threading.Barrier(2, timeout=15)
    atomic = threading.Lock()
    recorded = S3Response.put_object

    def racing(self: S3Response) -> Any:
        if self.path.endswith("/_delta_log/00000000000000000001.json"):
            both_there.wait()
        with atomic:
            return recorded(self)

    monkeypatch.setattr(S3Response, "put_object", racing)
    writers = [deltalake.DeltaTable(uri, storage_options=delta_options(endpoint)) for _ in range(2)]
    errors: list[BaseException] = []

    def append(table: deltalake.DeltaTable, value: int) -> None:
        try:
            deltalake.write_deltalake(table, pa.table({"a": [value]}), mode="append")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=append, args=(table, n)) for n, table in enumerate(writers, start=1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    version_1 = [status for key, _, status in log_puts if key.endswith("00000000000000000001.json")]
    assert sorted(version_1) == [200, 412]
    table = deltalake.DeltaTable(uri, storage_options=delta_options(endpoint))
    assert table.version() == 2
    assert sorted(table.to_pyarrow_table()["a"].to_pylist()) == [0, 1, 2]


def test_moto_if_none_match_is_check_then_write(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 checks If-None-Match and stores the object in two steps, unlocked: two PUTs that
    both pass the check both succeed, which S3 never allows. A test of concurrent writers on moto
    must serialize its PUTs (as the test above does)."""
    s3 = client(endpoint)
    s3.put_object(Bucket=BUCKET, Key="once/a", Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=BUCKET, Key="once/a", Body=b"2", IfNoneMatch="*")

    both_checked = threading.Barrier(2, timeout=15)
    original = S3Response._get_checksum  # called after the If-None-Match check, before the store

    def between(self: S3Response, response_headers: dict[str, Any]) -> Any:
        if self.path.endswith("/once/b"):
            both_checked.wait()
        return original(self, response_headers)

    monkeypatch.setattr(S3Response, "_get_checksum", between)
    statuses: list[int] = []

    def put(body: bytes) -> None:
        answer = client(endpoint).put_object(Bucket=BUCKET, Key="once/b", Body=body, IfNoneMatch="*")
        statuses.append(answer["ResponseMetadata"]["HTTPStatusCode"])

    threads = [threading.Thread(target=put, args=(body,)) for body in (b"1", b"2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200]


# --- chDB ---------------------------------------------------------------------------------------


def chdb_expected(rows: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """What chDB gives back: text as bytes, naive timestamps marked UTC, TIME as whole seconds."""
    converted = []
    for row in ordered(rows, columns):
        row = dict(row)
        if row["s"] is not None:
            row["s"] = row["s"].encode()
        if row["ts"] is not None:
            row["ts"] = row["ts"].replace(tzinfo=UTC)
        if row.get("tm") is not None:
            row["tm"] = row["tm"].hour * 3600 + row["tm"].minute * 60 + row["tm"].second
        converted.append(row)
    return converted


def assert_chdb_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    # chDB's datetimes carry ZoneInfo('UTC') or ZoneInfo('Etc/UTC'): compare instants.
    for row in actual:
        for name in ("ts", "tstz"):
            if row[name] is not None:
                row[name] = row[name].astimezone(UTC)
    assert_rows(actual, expected)


@pytest.mark.parametrize("name", ["plain", "daily"])
def test_chdb_reads_iceberg(reader: Path, endpoint: str, iceberg: dict[str, dict[str, Any]], name: str) -> None:
    table = iceberg[name]
    result = readers.read_iceberg(table["location"], endpoint, order_by="i", engine="chdb")
    assert result.versions["chdb"] == "4.4.0"
    assert result.types == CHDB_ICEBERG_TYPES
    assert arrow_types(result.table.schema) == arrow_types(
        pa.schema([(f.name, CHDB_ARROW.get(f.name, f.type)) for f in SCHEMA])
    )
    assert_chdb_rows(result.rows(), chdb_expected(FIRST + SECOND, SCHEMA.names))
    assert_chdb_rows(
        readers.read_iceberg(table["metadata"], endpoint, order_by="i", engine="chdb").rows(),
        chdb_expected(FIRST + SECOND, SCHEMA.names),
    )
    # the table as it was: the first metadata file, or the first snapshot by id and by time
    at = dt.datetime.fromtimestamp(table["first_snapshot"].timestamp_ms / 1000, UTC)
    for location, snapshot in (
        (table["first_metadata"], None),
        (table["location"], table["first_snapshot"].snapshot_id),
        (table["metadata"], at),
    ):
        older = readers.read_iceberg(location, endpoint, snapshot=snapshot, order_by="i", engine="chdb")
        assert_chdb_rows(older.rows(), chdb_expected(FIRST, SCHEMA.names))


def test_chdb_reads_delta(reader: Path, endpoint: str, delta: str) -> None:
    result = readers.read_delta(delta, endpoint, order_by="i", engine="chdb")
    assert result.types == CHDB_DELTA_TYPES
    assert arrow_types(result.table.schema) == {
        name: str(CHDB_ARROW.get(name, SCHEMA.field(name).type)) for name in DELTA_COLUMNS
    }
    assert_chdb_rows(result.rows(), chdb_expected(FIRST + SECOND, DELTA_COLUMNS))
    older = readers.read_delta(delta, endpoint, version=0, order_by="i", engine="chdb")
    assert_chdb_rows(older.rows(), chdb_expected(FIRST, DELTA_COLUMNS))


# --- the reader venv ----------------------------------------------------------------------------

# ensure_reader_venv in a process of its own, on a venv of one small package, logging each command
# it runs (python -m venv, pip install) with its process and times.
RACER = """
import json, os, sys, time
from pathlib import Path
from data_migration_tests import readers
readers.READER_PACKAGES = ("tzdata==2026.6",)
original = readers._run
def logged(command):
    start = time.time()
    original(command)
    with open(sys.argv[2], "a") as log:
        log.write(json.dumps([os.getpid(), command[2], start, time.time()]) + "\\n")
readers._run = logged
print(readers.ensure_reader_venv(Path(sys.argv[1])))
"""


def test_two_processes_racing_to_create_the_venv_create_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv, log = tmp_path / "venv", tmp_path / "commands.jsonl"

    def racers(count: int) -> list[subprocess.Popen[str]]:
        return [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(venv), str(log)],
                cwd=readers.REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def finish(processes: list[subprocess.Popen[str]]) -> list[str]:
        outputs = [process.communicate(timeout=120) for process in processes]
        assert [process.returncode for process in processes] == [0] * len(processes), outputs
        return [out.strip() for out, _ in outputs]

    assert finish(racers(2)) == [str(venv / "bin" / "python")] * 2
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    assert [command[1] for command in commands] == ["venv", "pip"]  # once, by one of the two
    assert len({command[0] for command in commands}) == 1
    assert (venv / readers.STAMP).exists()
    assert (tmp_path / "venv.lock").exists()
    # In this process from here on: reused as it is (no command); without its stamp, the installed
    # versions are checked and it is stamped again (no command); a venv whose python is gone is
    # made again; one with another package version gets pip install only.
    ran: list[str] = []
    run = readers._run
    monkeypatch.setattr(readers, "READER_PACKAGES", ("tzdata==2026.6",))
    monkeypatch.setattr(readers, "_run", lambda command: (ran.append(command[2]), run(command)))
    python = venv / "bin" / "python"
    assert readers.ensure_reader_venv(venv) == python
    (venv / readers.STAMP).unlink()
    assert readers.ensure_reader_venv(venv) == python
    assert ran == []
    assert json.loads((venv / readers.STAMP).read_text())["wanted"]["packages"] == ["tzdata==2026.6"]
    python.unlink()
    assert readers.ensure_reader_venv(venv) == python
    assert ran == ["venv", "pip"]
    monkeypatch.setattr(readers, "READER_PACKAGES", ("tzdata==2025.3",))
    assert readers.ensure_reader_venv(venv) == python
    assert ran == ["venv", "pip", "pip"]
    assert readers._probe(python)["versions"] == {"tzdata": "2025.3"}
