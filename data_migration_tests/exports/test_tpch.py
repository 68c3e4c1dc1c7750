"""TPC-H Q1 and Q3 on the exported files give the same answers as on the source tables.

ORDERS, LINEITEM and CUSTOMER are exported in each format; DuckDB runs the queries over the
files and over the emulator's own tables. The source answer is taken from the emulator's DuckDB
catalog directly, because fakesnow answers SUM over decimals with a double. The seeded dates are
shifted (see the README), so the queries' date literals are shifted by the same number of days:
otherwise Q1's filter would select nothing and the comparison would prove nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import fakesnow.server
import pytest

from data_migration.definitions import build_definitions
from data_migration.local import emulator
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import BUCKET, Snowflake, queries, write_config

TABLES = ("ORDERS", "LINEITEM", "CUSTOMER")
DUCKDB_TYPES = {"NUMBER(15,2)": "DECIMAL(15,2)", "DATE": "DATE", "VARCHAR": "VARCHAR"}


def answers(connection: Any, sources: dict[str, str], shift: int) -> dict[str, list[tuple]]:
    for table, relation in sources.items():
        connection.execute(f"create or replace temp view {table.lower()} as select * from {relation}")
    return {name: connection.execute(sql).fetchall() for name, sql in queries(shift).items()}


def duckdb_columns(schema: Any) -> str:
    types = {
        c.name: DUCKDB_TYPES.get(
            c.type, "BIGINT" if c.type.startswith("NUMBER(") and c.type.endswith(",0)") else c.type
        )
        for c in schema.columns
    }
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in types.items()) + "}"


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_q1_and_q3_on_exported_files_match_the_source(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, file_type: str
):
    exports = [{"table": t, "s3_path": f"exports/{t.lower()}/data.{file_type}", "file_type": file_type} for t in TABLES]
    result = (
        build_definitions(write_config(tmp_path / "e.yaml", exports), production_env)
        .resolve_job_def(ALL_EXPORTS_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success
    schemas = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata["dagster/column_schema"].value
        for e in result.get_asset_materialization_events()
    }

    files: dict[str, str] = {}
    for table in TABLES:
        path = tmp_path / f"{table}.{file_type}"
        path.write_bytes(s3.get_object(Bucket=BUCKET, Key=f"exports/{table.lower()}/data.{file_type}")["Body"].read())
        if file_type == "parquet":
            files[table] = f"read_parquet('{path}')"
        elif file_type == "csv":
            files[table] = f"read_csv('{path}', header=true, columns={duckdb_columns(schemas[table])})"
        else:
            files[table] = f"read_json('{path}', format='newline_delimited', columns={duckdb_columns(schemas[table])})"

    source_db = fakesnow.server.shared_fs.duck_conn.cursor()
    (newest,) = source_db.execute(
        f"select max(O_ORDERDATE) from {emulator.DATABASE}.{emulator.SCHEMA}.ORDERS"
    ).fetchone()
    shift = (newest - emulator.TPCH_LAST_ORDER_DATE).days
    expected = answers(source_db, {t: f"{emulator.DATABASE}.{emulator.SCHEMA}.{t}" for t in TABLES}, shift)
    got = answers(duckdb.connect(), files, shift)

    assert len(expected["Q1"]) == 4 and sum(row[-1] for row in expected["Q1"]) > 50_000  # real work was done
    assert len(expected["Q3"]) == 10
    assert got == expected
