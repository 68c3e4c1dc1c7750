"""Query results from the embedded emulator in Snowflake's REST result format, read by the real
snowflake-connector-python 4.x, as Snowflake sends them:

- Several chunks per result. The first rows come inline (`rowsetBase64`), the rest as `chunks`
  (each `url`, `rowCount`, `compressedSize`, `uncompressedSize`) that the connector downloads itself
  with GET, sending the `chunkHeaders` of the answer (connector: result_batch.py,
  create_batches_from_response and ResultBatch._download). Snowflake's documentation calls them
  result batches, each with a `rowcount`, `compressed_size` and `uncompressed_size`
  (https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-distributed-fetch);
  the SQL API's partitions are "single physical chunks of data" whose size "is variable and
  determined automatically by Snowflake at runtime"
  (https://docs.snowflake.com/en/release-notes/bcr-bundles/un-bundled/changes-process-of-submitting-SQL-statements),
  and CLIENT_RESULT_CHUNK_SIZE caps a chunk's uncompressed size, so more chunks come for the same
  result (https://docs.snowflake.com/en/release-notes/bcr-bundles/2026_04/bcr-2319).
- Each chunk's types from that chunk's values. NUMBER is FIXED (field metadata `logicalType`,
  `precision`, `scale`) in int8, int16, int32 or int64 by the values present, the unscaled integer
  for a scale above 0, and decimal128 beyond int64 (connector: CArrowChunkIterator.cpp's FIXED
  converters, CArrowTableIterator.cpp's convertIfNeeded); "Numeric widths can depend on the
  returned values" (https://docs.snowflake.com/en/developer-guide/snowpark/reference/python/1.59.0/snowpark/api/snowflake.snowpark.DataFrame.toPandas).
  The connector's release notes name the consequence: "PyArrow schema inconsistency between
  batches" (v4.3.0, https://pypi.org/project/snowflake-connector-python).
- TIMESTAMP_NTZ(9) and TIME(9) with their nanoseconds: "Time precision can range from 0 (seconds)
  to 9 (nanoseconds). The default precision is 9." NUMBER's default is (38,0), and INT is
  NUMBER(38,0) (https://docs.snowflake.com/en/sql-reference/data-types-datetime,
  https://docs.snowflake.com/en/sql-reference/intro-summary-data-types).

Statement results are read by column name (a DictCursor, Arrow fields by name).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from base64 import b64decode
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
import requests
import snowflake.connector
from snowflake.connector import DictCursor
from snowflake.connector.errors import ProgrammingError

from data_migration.local import emulator
from data_migration.local.results import ResultChunks
from data_migration_tests.support import LOAD_DB, Snowflake

FIRST_ROWS, CHUNK_ROWS = 10, 100  # the inline part, then chunks of this many rows

BIG = 12345678901234567890123456789  # beyond int64; NUMBER(38,0) holds it


@pytest.fixture
def small_chunks(fake_snowflake: Snowflake, monkeypatch: pytest.MonkeyPatch) -> ResultChunks:
    """The shared emulator's results in small chunks for this test."""
    results = fake_snowflake.recorder.app.results
    monkeypatch.setattr(results, "first_rows", FIRST_ROWS)
    monkeypatch.setattr(results, "chunk_rows", CHUNK_ROWS)
    return results


@pytest.fixture
def cursor(fake_snowflake: Snowflake) -> Iterator[Any]:
    with contextlib.closing(fake_snowflake.connect()) as connection:
        yield connection.cursor(DictCursor)


def decimal_session(fake: Snowflake) -> Any:
    """A session whose Arrow tables hold scaled numbers as decimals (`arrow_number_to_decimal`)."""
    return snowflake.connector.connect(
        user="test", password="test", account="fakesnow", host=fake.host, port=fake.port, protocol="http",
        database=emulator.DATABASE, schema=emulator.SCHEMA, network_timeout=30, arrow_number_to_decimal=True,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )  # fmt: skip


def generated(rows: int, *columns: str) -> str:
    selected = ", ".join(["SEQ4() AS SEQ", *columns])
    return f"SELECT {selected} FROM TABLE(GENERATOR(ROWCOUNT => {rows})) ORDER BY SEQ"


def test_a_large_result_arrives_in_chunks_the_connector_downloads(small_chunks: ResultChunks, cursor: Any):
    cursor.execute(generated(1000, "'row ' || SEQ4() AS TEXT"))
    batches = cursor.get_result_batches()
    assert [batch.rowcount for batch in batches] == [FIRST_ROWS, *[CHUNK_ROWS] * 9, 90]
    assert batches[0].compressed_size is None  # the inline part
    assert all(0 < batch.compressed_size < batch.uncompressed_size for batch in batches[1:])  # gzip
    served_before = len(small_chunks.served)
    rows = cursor.fetchall()
    assert [row["SEQ"] for row in rows] == list(range(1000))  # every row once, in order
    assert [row["TEXT"] for row in rows[::250]] == ["row 0", "row 250", "row 500", "row 750"]
    downloads = [chunk for chunk in small_chunks.served[served_before:] if chunk[0] == cursor.sfqid]
    assert sorted(index for _, index in downloads) == list(range(1, 11))  # each chunk's GET, once


def test_a_small_result_stays_inline(small_chunks: ResultChunks, cursor: Any):
    served_before = len(small_chunks.served)
    cursor.execute(generated(FIRST_ROWS))
    assert [batch.rowcount for batch in cursor.get_result_batches()] == [FIRST_ROWS]
    assert [row["SEQ"] for row in cursor.fetchall()] == list(range(FIRST_ROWS))
    assert small_chunks.served[served_before:] == []


def test_a_chunk_is_served_only_with_the_headers_the_answer_names(small_chunks: ResultChunks, cursor: Any):
    """A chunk URL is a presigned GET for an object encrypted with the answer's key (SSE-C, the
    `chunkHeaders`, or `qrmk`); S3 refuses such a GET without the key's headers and with a
    wrong key (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerSideEncryptionCustomerKeys.html)."""
    cursor.execute(generated(300))
    batch = cursor.get_result_batches()[1]
    url, headers = batch._remote_chunk_info.url, batch._chunk_headers  # what the connector downloads with
    assert set(headers) == {
        "x-amz-server-side-encryption-customer-algorithm",
        "x-amz-server-side-encryption-customer-key",
        "x-amz-server-side-encryption-customer-key-md5",
    }
    assert requests.get(url, timeout=10).status_code == 400
    wrong = {**headers, "x-amz-server-side-encryption-customer-key": "A" * 44}
    assert requests.get(url, headers=wrong, timeout=10).status_code == 403
    assert requests.get(url.replace("sig=", "sig=x"), headers=headers, timeout=10).status_code == 403
    answer = requests.get(url, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Encoding"] == "gzip"
    chunk = pa.ipc.open_stream(answer.content).read_all()  # a plain Arrow IPC stream once unzipped
    assert chunk.column("SEQ").to_pylist() == list(range(FIRST_ROWS, FIRST_ROWS + CHUNK_ROWS))
    assert chunk.schema.field("SEQ").metadata[b"logicalType"] == b"FIXED"


def test_each_chunk_holds_its_numbers_in_the_narrowest_type(small_chunks: ResultChunks, cursor: Any):
    number = (
        "CASE WHEN SEQ4() < 110 THEN SEQ4() WHEN SEQ4() < 210 THEN SEQ4() * 100 "
        "WHEN SEQ4() < 310 THEN SEQ4() * 1000000 WHEN SEQ4() < 410 THEN SEQ4() * 10000000000 "
        f"ELSE {BIG} END::NUMBER(38,0) AS N"
    )
    cursor.execute(generated(500, number))
    types = [table.schema.field("N").type for table in cursor.fetch_arrow_batches()]
    assert types == [pa.int8(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.decimal128(38, 0)]
    cursor.execute(generated(500, number))
    expected = [s if s < 110 else s * 100 if s < 210 else s * 10**6 if s < 310 else s * 10**10 if s < 410 else BIG
                for s in range(500)]  # fmt: skip
    assert [row["N"] for row in cursor.fetchall()] == expected


def test_a_number_beyond_int64_is_returned(cursor: Any):
    cursor.execute(f"SELECT {BIG}::NUMBER(38,0) AS N, -{BIG}::NUMBER AS M, 1::NUMBER(38,0) AS ONE")
    (row,) = cursor.fetchall()
    assert (row["N"], row["M"], row["ONE"]) == (BIG, -BIG, 1)


def test_table_columns_hold_what_duckdb_can(fake_snowflake: Snowflake, schema: str, small_chunks: ResultChunks):
    """A NUMBER(37,0) column holds a value beyond int64, sent as decimal128 in its chunk and as int8
    in a chunk of small values. A NUMBER(38,0) or INT column is DuckDB's BIGINT in the emulator
    (local/precision.py: DuckDB's functions take no wider integer), so a value beyond int64 fails
    there, where Snowflake stores it."""
    with contextlib.closing(fake_snowflake.connect(LOAD_DB, schema)) as connection:
        cursor = connection.cursor(DictCursor)
        cursor.execute("CREATE TABLE T (ID NUMBER(38,0), N NUMBER(37,0))")
        cursor.execute(
            f"INSERT INTO T SELECT SEQ4(), IFF(SEQ4() < 110, SEQ4(), {BIG}) FROM TABLE(GENERATOR(ROWCOUNT => 200))"
        )
        cursor.execute("SELECT ID, N FROM T ORDER BY ID")
        types = [table.schema.field("N").type for table in cursor.fetch_arrow_batches()]
        assert types == [pa.int8(), pa.int8(), pa.decimal128(37, 0)]
        cursor.execute("SELECT ID, N, N + 1 AS NEXT FROM T WHERE ID = 199")
        assert cursor.fetchall() == [{"ID": 199, "N": BIG, "NEXT": BIG + 1}]
        with pytest.raises(ProgrammingError, match="out of range"):
            cursor.execute(f"INSERT INTO T VALUES ({BIG}, 0)")


def test_a_scaled_number_is_sent_as_its_unscaled_integer(fake_snowflake: Snowflake, cursor: Any):
    """NUMBER(p,s) with s > 0: an integer chunk with `scale` in the field's metadata, or decimal128
    beyond int64. The connector's Arrow tables turn an integer chunk into float64 unless the
    connection asks for decimals (CArrowTableIterator::convertScaledFixedNumberColumn_nanoarrow,
    `arrow_number_to_decimal`); its rows read it as Decimal."""
    query = "SELECT 1.25::NUMBER(12,2) AS D, 12345678901234567890123456789.123456789::NUMBER(38,9) AS WIDE"
    cursor.execute(query)
    wire = pa.ipc.open_stream(b64decode(cursor.get_result_batches()[0]._data)).read_all()
    assert wire.schema.field("D").type == pa.int8() and wire.column("D").to_pylist() == [125]
    assert wire.schema.field("D").metadata[b"scale"] == b"2"
    assert wire.schema.field("WIDE").type == pa.decimal128(38, 9)
    table = cursor.fetch_arrow_all()
    assert table.schema.field("D").type == pa.float64() and table.column("D").to_pylist() == [1.25]
    cursor.execute(query)
    (row,) = cursor.fetchall()
    assert str(row["D"]) == "1.25" and str(row["WIDE"]) == "12345678901234567890123456789.123456789"
    with contextlib.closing(decimal_session(fake_snowflake)) as connection:
        decimals = connection.cursor()
        decimals.execute(query)
        assert decimals.fetch_arrow_all().schema.field("D").type == pa.decimal128(38, 2)


def test_timestamps_and_times_keep_their_digits(cursor: Any):
    cursor.execute(
        "SELECT '2024-01-01 12:00:00.123456789'::TIMESTAMP_NTZ(9) AS NS, "
        "'9999-12-31 23:59:59.999999'::TIMESTAMP_NTZ AS FAR, '12:34:56.123456789'::TIME(9) AS T, "
        "NULL::TIMESTAMP_NTZ AS NOTHING"
    )
    wire = pa.ipc.open_stream(b64decode(cursor.get_result_batches()[0]._data)).read_all()
    # TIME(9) as int64 nanoseconds since midnight, its scale in the metadata (CArrowChunkIterator's TIME)
    assert wire.column("T").to_pylist() == [(12 * 3600 + 34 * 60 + 56) * 10**9 + 123456789]
    assert wire.schema.field("T").metadata[b"scale"] == b"9"
    # TIMESTAMP_NTZ(9) as a struct of epoch seconds and nanoseconds (TwoFieldTimeStampNTZConverter)
    assert wire.column("NS").to_pylist() == [{"epoch": 1704110400, "fraction": 123456789}]
    assert wire.column("NOTHING").to_pylist() == [None]
    table = cursor.fetch_arrow_all()
    assert table.schema.field("NS").type == pa.timestamp("ns")
    assert table.column("NS").cast(pa.int64()).to_pylist() == [1704110400123456789]
    # beyond 2262 the connector gives microseconds (_checkNanosecondTimestampOverflowAndDownscale)
    assert table.schema.field("FAR").type == pa.timestamp("us")
    assert table.column("FAR").to_pylist() == [dt.datetime(9999, 12, 31, 23, 59, 59, 999999)]
    assert table.column("NOTHING").to_pylist() == [None]
    # The connector's Arrow tables hold TIME in microseconds: it divides a TIME(9) by 1000
    # (CArrowTableIterator::convertTimeColumn_nanoarrow), as it does Snowflake's.
    assert table.schema.field("T").type == pa.time64("us")
    assert table.column("T").to_pylist() == [dt.time(12, 34, 56, 123456)]


def test_a_chunk_beyond_2262_arrives_in_microseconds_and_the_others_in_nanoseconds(
    small_chunks: ResultChunks, cursor: Any
):
    at = (
        "CASE WHEN SEQ4() < 150 THEN '2024-01-01 12:00:00.123456'::TIMESTAMP_NTZ "
        "ELSE '9999-12-31 23:59:59.999999'::TIMESTAMP_NTZ END AS STAMP"
    )
    cursor.execute(generated(200, at))
    tables = list(cursor.fetch_arrow_batches())
    assert [table.schema.field("STAMP").type for table in tables] == [
        pa.timestamp("ns"), pa.timestamp("ns"), pa.timestamp("us"),
    ]  # fmt: skip
    values = [value for table in tables for value in table.column("STAMP").to_pylist()]
    assert values[149] == dt.datetime(2024, 1, 1, 12, 0, 0, 123456)
    assert values[150] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)


def test_a_table_of_timestamp_ntz_9_keeps_nanoseconds(fake_snowflake: Snowflake, schema: str):
    with contextlib.closing(fake_snowflake.connect(LOAD_DB, schema)) as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE T (STAMP TIMESTAMP_NTZ(9), PLAIN TIMESTAMP_NTZ)")
        cursor.execute("INSERT INTO T VALUES ('2024-01-01 12:00:00.123456789', '9999-12-31 23:59:59.999999')")
        cursor.execute("SELECT STAMP, PLAIN FROM T")
        table = cursor.fetch_arrow_all()
        assert table.column("STAMP").cast(pa.int64()).to_pylist() == [1704110400123456789]
        assert table.column("PLAIN").to_pylist() == [dt.datetime(9999, 12, 31, 23, 59, 59, 999999)]
        cursor.execute("DESCRIBE TABLE T")
        names = [meta.name for meta in cursor.description]
        types = {row[names.index("name")]: row[names.index("type")] for row in cursor.fetchall()}
        assert types == {"STAMP": "TIMESTAMP_NTZ(9)", "PLAIN": "TIMESTAMP_NTZ(9)"}
