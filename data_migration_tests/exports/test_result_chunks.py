"""Exports of results that arrive as Snowflake sends them: in several chunks, each chunk's types
from its own values (NUMBER(38,0) as int8 in one chunk and decimal128 in the next, TIMESTAMP_NTZ
in nanoseconds in one and microseconds in a chunk beyond 2262), read back by pyarrow and by DuckDB.

The emulator's result format (local/results.py) follows the connector's reading of Snowflake's
(result_batch.py, the nanoarrow iterators) and Snowflake's documentation of result batches
(https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-distributed-fetch);
the connector's release notes name the "PyArrow schema inconsistency between batches" (v4.3.0,
https://pypi.org/project/snowflake-connector-python). TIMESTAMP_NTZ's precision is 0 to 9, 9 by
default (https://docs.snowflake.com/en/sql-reference/data-types-datetime).
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_migration.definitions import build_definitions
from data_migration.local.results import ResultChunks
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import BUCKET, Snowflake, write_config

FIRST_ROWS, CHUNK_ROWS, ROWS = 10, 100, 300  # an inline part, then chunks 1-3
LATE = 250  # rows from here on are in the last chunk
BIG = 12345678901234567890123456789  # beyond int64
FAR = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)


@pytest.fixture
def small_chunks(fake_snowflake: Snowflake, monkeypatch: pytest.MonkeyPatch) -> ResultChunks:
    results = fake_snowflake.recorder.app.results
    monkeypatch.setattr(results, "first_rows", FIRST_ROWS)
    monkeypatch.setattr(results, "chunk_rows", CHUNK_ROWS)
    return results


def generated(*columns: str) -> str:
    selected = ", ".join(["SEQ4() AS ID", *columns])
    return f"SELECT {selected} FROM TABLE(GENERATOR(ROWCOUNT => {ROWS})) ORDER BY ID"


def export(production_env: dict, tmp_path: Path, query: str, **options: Any) -> dg.ExecuteInProcessResult:
    entry = {"table": "CHUNKS", "s3_path": "exports/chunks/data.parquet", "file_type": "parquet", "query": query}
    config = write_config(tmp_path / "e.yaml", [{**entry, **options}])
    return (
        build_definitions(config, production_env)
        .resolve_job_def(ALL_EXPORTS_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )


def written(s3: Any, tmp_path: Path) -> tuple[pa.Table, Path]:
    body = s3.get_object(Bucket=BUCKET, Key="exports/chunks/data.parquet")["Body"].read()
    path = tmp_path / "data.parquet"
    path.write_bytes(body)
    return pq.read_table(io.BytesIO(body)), path


def failures(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(event.event_specific_data.error.to_string() for event in result.get_step_failure_events())


def test_a_late_chunk_with_a_far_timestamp_and_a_wide_number_is_written_exactly(
    production_env: dict, tmp_path: Path, s3: Any, small_chunks: ResultChunks
):
    query = generated(
        f"CASE WHEN SEQ4() < {LATE} THEN '2024-01-01 12:00:00.123456'::TIMESTAMP_NTZ "
        "ELSE '9999-12-31 23:59:59.999999'::TIMESTAMP_NTZ END AS STAMP",
        f"CASE WHEN SEQ4() < {LATE} THEN SEQ4() ELSE {BIG} END::NUMBER(38,0) AS N",
    )
    served_before = len(small_chunks.served)
    result = export(production_env, tmp_path, query)
    assert result.success, failures(result)
    assert len(small_chunks.served) - served_before == 3  # the connector downloaded chunks 1-3

    table, path = written(s3, tmp_path)
    assert table.schema.field("STAMP").type == pa.timestamp("us")  # the export's unit, whatever the chunk's
    assert table.schema.field("N").type == pa.decimal128(38, 0)
    assert table.column("ID").to_pylist() == list(range(ROWS))
    near = dt.datetime(2024, 1, 1, 12, 0, 0, 123456)
    assert table.column("STAMP").to_pylist() == [near] * LATE + [FAR] * (ROWS - LATE)
    assert table.column("N").to_pylist() == [Decimal(i) for i in range(LATE)] + [Decimal(BIG)] * (ROWS - LATE)

    with duckdb.connect() as db:  # an independent reader
        rows = db.execute(
            "SELECT ID, STAMP, N, N::VARCHAR AS TEXT FROM read_parquet(?) WHERE ID IN (0, 249, 250, 299) ORDER BY ID",
            [str(path)],
        ).fetchall()
    assert rows == [
        (0, near, Decimal(0), "0"),
        (249, near, Decimal(249), "249"),
        (250, FAR, Decimal(BIG), str(BIG)),
        (299, FAR, Decimal(BIG), str(BIG)),
    ]


NANOS = generated(
    f"CASE WHEN SEQ4() < {LATE} THEN '2024-01-01 12:00:00'::TIMESTAMP_NTZ(9) "
    "ELSE '2024-01-01 12:00:00.123456789'::TIMESTAMP_NTZ(9) END AS STAMP"
)


def test_nanoseconds_in_a_late_chunk_fail_a_microsecond_export_naming_the_column_and_the_unit(
    production_env: dict, tmp_path: Path, s3: Any, small_chunks: ResultChunks
):
    result = export(production_env, tmp_path, NANOS)
    assert not result.success
    message = failures(result)
    assert "column STAMP (TIMESTAMP_NTZ(9))" in message and "timestamp_unit: ns" in message, message
    assert "2024-01-01 12:00:00.123456789" in message, message


def test_timestamp_unit_ns_keeps_the_nanoseconds(
    production_env: dict, tmp_path: Path, s3: Any, small_chunks: ResultChunks
):
    result = export(production_env, tmp_path, NANOS, timestamp_unit="ns")
    assert result.success, failures(result)
    table, path = written(s3, tmp_path)
    assert table.schema.field("STAMP").type == pa.timestamp("ns")
    noon = 1704110400 * 10**9
    assert table.column("STAMP").cast(pa.int64()).to_pylist() == [noon] * LATE + [noon + 123456789] * (ROWS - LATE)
    with duckdb.connect() as db:
        (text,) = db.execute("SELECT MAX(STAMP)::VARCHAR FROM read_parquet(?)", [str(path)]).fetchone()
    assert text == "2024-01-01 12:00:00.123456789"


def test_a_scaled_number_in_an_integer_chunk_is_written_exactly(
    production_env: dict, tmp_path: Path, s3: Any, small_chunks: ResultChunks
):
    """Snowflake sends NUMBER(38,9) as the unscaled integer in the narrowest type that holds the
    chunk's values (int64 for 1234567890123456789), decimal128 only beyond int64."""
    query = generated("1234567890.123456789::NUMBER(38,9) AS AMOUNT")
    result = export(production_env, tmp_path, query)
    assert result.success, failures(result)
    table, _ = written(s3, tmp_path)
    assert set(table.column("AMOUNT").to_pylist()) == {Decimal("1234567890.123456789")}
