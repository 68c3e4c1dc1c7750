"""Loads: the list's `loads:` errors; the statements (exact text, parsed with sqlglot); the embedded
emulator's COPY INTO <table> from a named stage and ALTER TABLE … SWAP WITH against Snowflake's
documented behaviour; and end to end against fakesnow's server and moto: round trips of ORDERS
and of the type matrix (EXCEPT both ways empty, the same column types), replace twice, a failure
before the overwrite (the old rows intact), append retried (no row twice), merge (changed rows
updated; NULL and duplicate keys refused), rows that do not match the manifest, the external
stage over the bucket, the load role, and the embedded default through the CLI.
"""

from __future__ import annotations

import io
import logging
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector
import sqlglot
from sqlglot import exp

from data_migration.config import ConfigError, LoadSpec, load_exports, parse_exports
from data_migration.config.names import parse_object_name
from data_migration.definitions import build_definitions
from data_migration.loads.apply import Session, run_load
from data_migration.loads.sources import resolve_source
from data_migration.loads.sql import LoadSqlError, copy_sql, insert_sql, load_column, merge_sql, put_sql
from data_migration.local import emulator
from data_migration.local.stages import folder_stage, s3_stage
from data_migration.resources import SettingsError, deployment_from_env
from data_migration_tests.support import (
    BUCKET,
    COLUMNS,
    LOAD_DB,
    ROWS,
    Snowflake,
    failure,
    load_entry,
    metadata,
    parquet_bytes,
    run,
    s3_store,
    write_config,
)

DB = LOAD_DB


# The list ------------------------------------------------------------------------------------------


def test_every_problem_of_a_load_entry_is_named_with_its_field():
    document = {
        "exports": [
            {"table": "ORDERS", "s3_path": "exports/orders/data.parquet"},
            {"table": "SUMMARY", "s3_path": "exports/summary.csv", "file_type": "csv"},
            {"table": "DAILY", "s3_path": "exports/d/{partition}/x.parquet",
             "partition": {"column": "D", "granularity": "daily", "start": "2024-01-01"}},
            {"table": "BACK", "s3_path": "exports/back.parquet", "query": "SELECT * FROM A.B.COPIED"},
        ],
        "loads": [
            {"table": "A.B.C", "from": "ORDERS", "s3_path": "x.parquet", "mode": "append"},
            {"table": "A.B.D", "mode": "append"},
            {"table": "A.B.E", "from": "NOPE", "mode": "replace"},
            {"table": "A.B.F", "from": "SUMMARY", "mode": "replace"},
            {"table": "A.B.G", "from": "DAILY", "mode": "replace"},
            {"table": "A.B.H", "from": "ORDERS", "mode": "merge"},
            {"table": "A.B.I", "from": "ORDERS", "mode": "append", "keys": ["ID"]},
            {"table": "A.B.J", "from": "ORDERS", "mode": "upsert", "colour": "red"},
            {"table": "A.B.K; drop table x", "from": "ORDERS", "mode": "append"},
            {"table": "ORDERS", "s3_path": "in/o.parquet", "mode": "append"},
            {"table": "A.B.COPIED", "from": "BACK", "mode": "replace"},
            {"table": "a.b.l", "s3_path": "in/l.parquet", "mode": "append"},
            {"table": "A.B.L", "s3_path": "in/l2.parquet", "mode": "append"},
            {"table": "A.B.M", "s3_path": "../up/x.parquet", "mode": "append", "create": "sometimes"},
            {"table": "A.B.N", "from": "ORDERS", "file_type": "parquet", "mode": "merge", "keys": ["ID", "ID"]},
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        parse_exports(document, "list.yaml")
    problems = raised.value.problems
    expected = [
        "loads[0] (A.B.C): give exactly one of `from` (an export in this file) and `s3_path`",
        "loads[1] (A.B.D): give exactly one of `from`",
        "loads[2] (A.B.E).from: 'NOPE' is not an export in this file (exports: ORDERS, SUMMARY, DAILY, BACK)",
        "loads[3] (A.B.F).from: loads read Parquet only",
        "loads[4] (A.B.G).from: exports[2] (DAILY) is partitioned",
        "loads[5] (A.B.H).keys: required for mode: merge",
        "loads[6] (A.B.I).keys: applies to mode: merge only, not append",
        "loads[7] (A.B.J).mode: 'upsert' is not one of append, replace, merge",
        "loads[7] (A.B.J).colour: unknown field (allowed: table, from, s3_path, file_type, mode, keys, create, "
        "allow_empty, freshness)",
        "loads[8] (A.B.K; drop table x).table:",
        "loads[9] (ORDERS).table: same asset name as exports[0] (ORDERS)",
        "loads[10] (A.B.COPIED).table: a cycle: exports[3] (BACK) reads this table",
        "loads[12] (A.B.L).table: same asset name as loads[11] (a.b.l)",
        "loads[12] (A.B.L).table: loads[11] (a.b.l) loads the same table",
        "loads[13] (A.B.M).create: 'sometimes' is not one of if_missing, never",
        "loads[14] (A.B.N).file_type: comes from the export named by `from`",
        "loads[14] (A.B.N).keys[1]: 'ID' is given twice",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), f"{line!r} not in {problems}"
    assert len(problems) == len(expected), problems
    with pytest.raises(ConfigError, match=r"loads\[0\] \(T\).s3_path: .*'\.\.' segment"):
        parse_exports({"loads": [{"table": "T", "s3_path": "a/../b.parquet", "mode": "append"}]}, "l.yaml")
    # A list of loads alone is a list; a load may read a folder of parts.
    only = parse_exports({"loads": [{"table": "T", "s3_path": "inbound/t/", "mode": "append"}]}, "l.yaml")
    assert only.exports == () and only.loads[0].s3_path == "inbound/t/" and only.loads[0].create == "if_missing"


def test_a_chain_of_loads_and_exports_without_a_cycle_is_allowed():
    config = parse_exports(
        {
            "exports": [
                {"table": "ORDERS", "s3_path": "exports/orders.parquet"},
                {"table": "SUMMARY", "s3_path": "exports/s.parquet", "query": "SELECT * FROM A.B.COPY1"},
            ],
            "loads": [{"table": "A.B.COPY1", "from": "ORDERS", "mode": "replace"}],
        },
        "l.yaml",
    )
    assert config.loads[0].source is config.exports[0] and config.loads[0].asset_key_path == ("A", "B", "COPY1")


# The statements -----------------------------------------------------------------------------------


def test_statements_quote_every_name_and_parse_as_snowflake_sql():
    target = parse_object_name('DB.S."Mixed Case"')
    landing = parse_object_name("DB.S.L")
    columns = [
        load_column("ID", "NUMBER(38,0)"),
        load_column('a "b"', "varchar"),
        load_column("V", "VARIANT", "string"),
    ]
    copy = copy_sql(landing, columns, '@"STAGE"', ["exports/o'x/data/g1/data-00000.parquet"])
    assert copy == (
        'COPY INTO "DB"."S"."L" ("ID", "a ""b""", "V") FROM (SELECT $1:"ID"::NUMBER(38,0), '
        '$1:"a ""b"""::VARCHAR, $1:"V"::VARCHAR FROM @"STAGE") FILES = (\'exports/o\\\'x/data/g1/data-00000.parquet\') '
        "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE BINARY_AS_TEXT = FALSE) ON_ERROR = ABORT_STATEMENT"
    )
    merge = merge_sql(target, landing, columns, parse_object_name("ID"))
    assert merge == (
        'MERGE INTO "DB"."S"."Mixed Case" AS T USING (SELECT "ID" AS "ID", "a ""b""" AS "a ""b""", '
        'PARSE_JSON("V") AS "V" FROM "DB"."S"."L") AS S ON T."ID" = S."ID" WHEN MATCHED THEN UPDATE SET '
        'T."a ""b""" = S."a ""b""", T."V" = S."V" WHEN NOT MATCHED THEN INSERT ("ID", "a ""b""", "V") '
        'VALUES (S."ID", S."a ""b""", S."V")'
    )
    overwrite = insert_sql(target, landing, columns, overwrite=True)
    assert overwrite == (
        'INSERT OVERWRITE INTO "DB"."S"."Mixed Case" ("ID", "a ""b""", "V") SELECT "ID", "a ""b""", PARSE_JSON("V") '
        'FROM "DB"."S"."L"'
    )
    for sql in (merge, overwrite):
        tree = sqlglot.parse_one(sql, read="snowflake")
        assert {t.name for t in tree.find_all(exp.Table)} >= {"Mixed Case"}
    assert isinstance(sqlglot.parse_one(copy, read="snowflake"), exp.Copy)
    assert columns[2].landing_type == "VARCHAR" and columns[2].value == 'PARSE_JSON("V")'
    with pytest.raises(LoadSqlError, match="NUMBER\\); DROP"):
        load_column("X", "NUMBER); DROP TABLE T; --")
    with pytest.raises(LoadSqlError, match="not a plain file name"):
        put_sql("../x.parquet", '"S"', "f")
    with pytest.raises(LoadSqlError, match="1 to 1000 files"):
        copy_sql(landing, columns, "@S/", [f"f{i}" for i in range(1001)])
    with pytest.raises(LoadSqlError, match="not a plain stage location"):
        copy_sql(landing, columns, "'@S/a b/'", ["f"])


# The emulator: COPY INTO <table> from a named stage, and SWAP WITH ----------------------------------


def test_copy_into_a_table_from_a_named_stage_loads_the_named_files_by_column_name(
    fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any, moto_endpoint: str
):
    root = tmp_path / "bucket"
    (root / "in" / "g1").mkdir(parents=True)
    (root / "in" / "g1" / "a.parquet").write_bytes(parquet_bytes(pa.table({"B": ["x", "y"], "A": [1, 2]})))
    (root / "in" / "g1" / "b.parquet").write_bytes(parquet_bytes(pa.table({"A": [3]})))
    s3.put_object(Bucket=BUCKET, Key="in/g2/c.parquet", Body=parquet_bytes(pa.table({"A": [4, 5, 6]})))
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    fake_snowflake.recorder.app.stages["FOLDER"] = folder_stage("FOLDER", root)
    fake_snowflake.recorder.app.stages["BUCKET"] = s3_stage("BUCKET", BUCKET, client)
    try:
        with fake_snowflake.connect(DB, schema) as conn:
            cursor = conn.cursor()
            cursor.execute("CREATE TABLE T (A NUMBER(38,0), B VARCHAR)")
            cursor.execute(
                "COPY INTO T FROM '@\"FOLDER\"/in/' FILES = ('g1/a.parquet', 'g1/b.parquet') "
                "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_SENSITIVE ON_ERROR = ABORT_STATEMENT"
            )
            output = cursor.fetchall()
            assert [(name.rsplit("/", 2)[-2:], status, rows) for name, status, _, rows, *_ in output] == [
                (["g1", "a.parquet"], "LOADED", 2),
                (["g1", "b.parquet"], "LOADED", 1),
            ]
            cursor.execute(
                "COPY INTO T FROM @bucket/in/g2/ FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_SENSITIVE"
            )
            assert cursor.fetchall()[0][3] == 3
            cursor.execute("SELECT A, B FROM T ORDER BY A")
            assert cursor.fetchall() == [(1, "x"), (2, "y"), (3, None), (4, None), (5, None), (6, None)]
            with pytest.raises(snowflake.connector.ProgrammingError, match="does not exist"):
                cursor.execute("COPY INTO T FROM '@\"NOPE\"/in/' FILE_FORMAT = (TYPE = PARQUET)")
    finally:
        fake_snowflake.recorder.app.stages.pop("FOLDER", None)
        fake_snowflake.recorder.app.stages.pop("BUCKET", None)


def test_swap_with_exchanges_two_tables_and_needs_both(fake_snowflake: Snowflake, schema: str):
    with fake_snowflake.connect(DB, schema) as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE OLD_T (A NUMBER(38,0))")
        cursor.execute("INSERT INTO OLD_T VALUES (1)")
        cursor.execute("CREATE TABLE NEW_T (A NUMBER(38,0), B VARCHAR)")
        cursor.execute("INSERT INTO NEW_T VALUES (2, 'x'), (3, 'y')")
        cursor.execute(f'ALTER TABLE NEW_T SWAP WITH "{DB}"."{schema}".OLD_T')
        assert cursor.fetchall() == [("Statement executed successfully.",)]
        cursor.execute("SELECT * FROM OLD_T ORDER BY A")
        assert cursor.fetchall() == [(2, "x"), (3, "y")]  # content and columns moved together
        cursor.execute("SELECT * FROM NEW_T")
        assert cursor.fetchall() == [(1,)]
        with pytest.raises(
            snowflake.connector.ProgrammingError, match=r"Object 'NOPE' does not exist or not authorized"
        ):
            cursor.execute("ALTER TABLE OLD_T SWAP WITH NOPE")
        cursor.execute("ALTER TABLE IF EXISTS NOPE SWAP WITH OLD_T")  # IF EXISTS: nothing to do
        cursor.execute("SELECT COUNT(*) FROM OLD_T")
        assert cursor.fetchall() == [(2,)]


def test_a_missing_table_fails_in_snowflakes_words(fake_snowflake: Snowflake, schema: str):
    with pytest.raises(snowflake.connector.ProgrammingError) as raised:
        fake_snowflake.execute("DELETE FROM MISSING_TABLE", DB, schema)
    assert raised.value.errno == 2003
    assert "Table 'MISSING_TABLE' does not exist or not authorized." in raised.value.msg


# End to end: fakesnow's server -> moto ----------------------------------------------------------------


def test_orders_round_trip_export_load_export_keeps_values_and_types(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    exports = [{"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "max_rows_per_file": 4000}]
    loads = [load_entry(schema, "ORDERS_COPY", **{"from": "ORDERS", "mode": "replace"})]
    defs = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env)
    instance = dg.DagsterInstance.ephemeral()
    result = run(defs, instance)
    assert result.success, failure(result)
    md = metadata(result, f"{DB}/{schema}/ORDERS_COPY")
    assert md["rows_loaded"] == md["dagster/row_count"] == 15_000 and md["files_loaded"] == 4
    assert md["mode"] == "replace" and md["target_created"] is True and "temporary internal stage" in md["stage"]
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name == "target_row_count"]
    assert len(checks) == 1 and checks[0].passed
    target = f"{DB}.{schema}.ORDERS_COPY"
    source = f"{fake_snowflake_db()}.ORDERS"
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM (SELECT * FROM {source} EXCEPT SELECT * FROM {target})") == [
        (0,)
    ]
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM (SELECT * FROM {target} EXCEPT SELECT * FROM {source})") == [
        (0,)
    ]
    assert describe(fake_snowflake, target) == describe(fake_snowflake, source)
    # No landing, new or stage table is left beside the target.
    tables = fake_snowflake.execute(f"SHOW TABLES IN SCHEMA {DB}.{schema}")
    assert [row[1] for row in tables] == ["ORDERS_COPY"]

    # Export the loaded table again: the same recorded column types, the same rows.
    again = [{"table": target, "s3_path": "exports/again/data.parquet"}]
    result = run(build_definitions(write_config(tmp_path / "a.yaml", again), production_env), instance)
    assert result.success, failure(result)
    schema_again = metadata(result, f"{DB}/{schema}/ORDERS_COPY")["dagster/column_schema"]
    first = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key="exports/again/data.parquet")["Body"].read()))
    assert first.num_rows == 15_000
    original = [c for c in metadata_of(instance, "ORDERS")["dagster/column_schema"].columns]
    assert [(c.name, c.type) for c in schema_again.columns] == [(c.name, c.type) for c in original]


def test_a_file_larger_than_a_piece_is_put_in_pieces_none_larger_than_the_limit(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any, monkeypatch
):
    """The connector holds a PUT's whole stream in memory (it encrypts a stream into a BytesIO,
    storage_client.py), so memory through the temporary internal stage grew with the file: a
    file over PIECE_BYTES goes as Parquet pieces, each PUT at most about the limit, with every
    row and type (issue 32, item 6)."""
    from data_migration.loads import pieces

    limit = 64 * 1024
    monkeypatch.setattr(pieces, "PIECE_BYTES", limit)
    sizes: list[int] = []
    original = Session.run

    def recording(self: Session, sql: str, *, file_stream: Any = None, quiet: bool = False) -> Any:
        if file_stream is not None:
            sizes.append(file_stream.seek(0, 2))
            file_stream.seek(0)
        return original(self, sql, file_stream=file_stream, quiet=quiet)

    monkeypatch.setattr(Session, "run", recording)
    exports = [{"table": "ORDERS", "s3_path": "exports/orders.parquet"}]  # one object
    loads = [load_entry(schema, "ORDERS_COPY", **{"from": "ORDERS", "mode": "replace"})]
    result = run(
        build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env),
        dg.DagsterInstance.ephemeral(),
    )
    assert result.success, failure(result)
    whole = s3.head_object(Bucket=BUCKET, Key="exports/orders.parquet")["ContentLength"]
    assert whole > 4 * limit
    md = metadata(result, f"{DB}/{schema}/ORDERS_COPY")
    assert md["rows_loaded"] == 15_000 and f"1 file(s) PUT as {len(sizes)} pieces" in md["stage"]
    assert len(sizes) >= 4 and max(sizes) < 2 * limit, sizes
    target, source = f"{DB}.{schema}.ORDERS_COPY", f"{fake_snowflake_db()}.ORDERS"
    for one, other in ((source, target), (target, source)):
        assert fake_snowflake.execute(f"SELECT COUNT(*) FROM (SELECT * FROM {one} EXCEPT SELECT * FROM {other})") == [
            (0,)
        ]
    assert describe(fake_snowflake, target) == describe(fake_snowflake, source)


def test_the_round_trip_writes_where_the_load_settings_say_not_in_the_read_only_source(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """The README's minimal settings read SNOWFLAKE_SAMPLE_DATA.TPCH_SF1, which is read-only on a
    real account: config/round_trip.yaml's unqualified ORDERS_RESTORED goes to
    SNOWFLAKE_LOAD_DATABASE.SNOWFLAKE_LOAD_SCHEMA (issue 34, the README's paths)."""
    from data_migration_tests.support import PROJECT_ROOT

    env = {**production_env, "SNOWFLAKE_LOAD_DATABASE": DB, "SNOWFLAKE_LOAD_SCHEMA": schema.lower()}
    # A sentinel where the load would have gone without the settings (another test's round trip
    # may have left a table of that name there): it must come out as it went in.
    sample = f"{fake_snowflake_db()}.ORDERS_RESTORED"
    fake_snowflake.execute(f"CREATE OR REPLACE TABLE {sample} (UNTOUCHED INT)")
    try:
        result = run(
            build_definitions(PROJECT_ROOT / "config" / "round_trip.yaml", env), dg.DagsterInstance.ephemeral()
        )
        assert result.success, failure(result)
        assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.ORDERS_RESTORED") == [(15_000,)]
        assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {sample}") == [(0,)]
        assert [name for name, *_ in describe_any(fake_snowflake, sample)] == ["UNTOUCHED"]
    finally:
        fake_snowflake.execute(f"DROP TABLE IF EXISTS {sample}")
    # A stage named in part would be looked for in the loads' place: the settings say so first.
    with pytest.raises(SettingsError, match="SNOWFLAKE_EXPORT_STAGE='EXPORTS': write it in full"):
        deployment_from_env({**env, "SNOWFLAKE_EXPORT_STAGE": "EXPORTS"})
    with pytest.raises(SettingsError, match="SNOWFLAKE_LOAD_SCHEMA='a.b': is not one name"):
        deployment_from_env({**env, "SNOWFLAKE_LOAD_SCHEMA": "a.b"})


def describe_any(fake: Snowflake, table: str) -> list[tuple[Any, ...]]:
    database, schema_name, name = table.split(".")
    return fake.execute(f"DESCRIBE TABLE {name}", database, schema_name)


def fake_snowflake_db() -> str:
    from data_migration.local import emulator

    return f"{emulator.DATABASE}.{emulator.SCHEMA}"


def metadata_of(instance: dg.DagsterInstance, key: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
    assert event is not None and event.asset_materialization is not None
    return {name: getattr(v, "value", v) for name, v in event.asset_materialization.metadata.items()}


def describe(fake: Snowflake, table: str) -> list[tuple[str, str]]:
    # fakesnow describes a table of the session's own database only, and names the type of a
    # column created from Parquet's int32 INTEGER, Snowflake's synonym of NUMBER(38,0).
    database, schema_name, name = table.split(".")
    rows = fake.execute(f"DESCRIBE TABLE {name}", database, schema_name)
    return [(row[0], "NUMBER(38,0)" if row[1] == "INTEGER" else row[1]) for row in rows]


@pytest.mark.parametrize("piece_bytes", [None, 1], ids=["whole", "a_piece_per_row"])
def test_the_type_matrix_round_trips_with_the_same_values_and_column_types(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any, monkeypatch, piece_bytes
):
    if piece_bytes is not None:  # every file rewritten as Parquet pieces (loads/pieces.py): the same types
        from data_migration.loads import pieces

        monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with fake_snowflake.connect(DB, schema) as conn:
        cursor = conn.cursor()
        cursor.execute(f'CREATE TABLE TYPES ({COLUMNS}, "ltz" timestamp_ltz)')
        for row in ROWS:
            cursor.execute(f"INSERT INTO TYPES SELECT {row}, '2024-01-01 10:00:00'::timestamp_ltz")
    source = f"{DB}.{schema}.TYPES"
    exports = [{"table": "TYPES", "query": f"SELECT * FROM {source}", "s3_path": "exports/types.parquet"}]
    loads = [load_entry(schema, "TYPES_COPY", **{"from": "TYPES", "mode": "replace"})]
    result = run(
        build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env),
        dg.DagsterInstance.ephemeral(),
    )
    assert result.success, failure(result)
    stage = metadata(result, f"{DB}/{schema}/TYPES_COPY")["stage"]
    assert ("file(s) PUT as" in stage) is (piece_bytes is not None), stage
    target = f"{DB}.{schema}.TYPES_COPY"
    assert describe(fake_snowflake, target) == describe(fake_snowflake, source)
    for one, other in ((source, target), (target, source)):
        # FLOAT NaN and VARIANT compare by their text; every other column as itself.
        assert fake_snowflake.execute(f"SELECT COUNT(*) FROM (SELECT * FROM {one} EXCEPT SELECT * FROM {other})") == [
            (0,)
        ]
    assert fake_snowflake.execute(f'SELECT "v" FROM {target} WHERE "Id" = 1') == [('{"k":[1,2.5,"x"]}',)]


def test_replace_twice_keeps_the_count_and_a_failure_before_the_overwrite_keeps_the_old_rows(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    exports = [{"table": "CUSTOMER", "s3_path": "exports/customer/data.parquet"}]
    loads = [load_entry(schema, "CUSTOMERS", **{"from": "CUSTOMER", "mode": "replace"})]
    config = write_config(tmp_path / "l.yaml", exports, loads)
    defs = build_definitions(config, production_env)
    instance = dg.DagsterInstance.ephemeral()
    for attempt in range(2):
        result = run(defs, instance)
        assert result.success, failure(result)
        assert metadata(result, f"{DB}/{schema}/CUSTOMERS")["target_created"] is (attempt == 0)
        assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.CUSTOMERS") == [(1500,)]
    sent = [q for q in fake_snowflake.recorder.queries if schema in q]
    overwrites = [q for q in sent if q.startswith(f'INSERT OVERWRITE INTO "{DB}"."{schema}"."CUSTOMERS" ')]
    assert len(overwrites) == 1  # the first run renamed a new table in; the second overwrote the rows
    assert len([q for q in sent if " RENAME TO " in q]) == 1 and not [q for q in sent if "SWAP WITH" in q]

    # A failure just before the overwrite: the table keeps its rows; nothing of the run is left.
    fake_snowflake.execute(f"DELETE FROM {DB}.{schema}.CUSTOMERS WHERE C_CUSTKEY > 1000")
    load_failing_before("overwrite", config, production_env, metadata_of(instance, "CUSTOMER"))
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.CUSTOMERS") == [(1000,)]
    assert [row[1] for row in fake_snowflake.execute(f"SHOW TABLES IN SCHEMA {DB}.{schema}")] == ["CUSTOMERS"]


@pytest.mark.parametrize("method", ["stream", "unload"])
def test_a_replace_from_a_source_of_no_rows_leaves_a_full_target_unless_allowed(
    stage_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any, method: str
):
    """An export whose query came out empty (a streamed export's one part of no rows, or an
    unload's manifest of no files) must not empty a full table."""
    target = f"{DB}.{schema}.CUSTOMERS"
    fake_snowflake.execute(f"CREATE TABLE {target} AS SELECT * FROM {emulator.DATABASE}.{emulator.SCHEMA}.CUSTOMER")
    export = {
        "table": "CUSTOMER_NOW",
        "query": "SELECT * FROM CUSTOMER WHERE C_CUSTKEY < 0",
        "s3_path": "exports/customer_now/data.parquet",
        "method": method,
    }
    load = load_entry(schema, "CUSTOMERS", **{"from": "CUSTOMER_NOW", "mode": "replace"})
    env = {**stage_env, "DATA_MIGRATION_MAX_RETRIES": "0"}
    result = run(
        build_definitions(write_config(tmp_path / "l.yaml", [export], [load]), env), dg.DagsterInstance.ephemeral()
    )
    assert not result.success
    message = failure(result)
    assert "has no rows, and replacing" in message and "remove all 1,500 of its rows" in message, message
    assert "exports/customer_now/data" in message and "allow_empty: true" in message
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {target}") == [(1500,)]
    assert not [q for q in fake_snowflake.recorder.queries if "INSERT OVERWRITE" in q and schema in q]

    allowed = {**load, "allow_empty": True}
    defs = build_definitions(write_config(tmp_path / "a.yaml", [export], [allowed]), env)
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {target}") == [(0,)]


def test_allow_empty_applies_to_replace_only(tmp_path: Path):
    exports = [{"table": "ORDERS", "s3_path": "exports/orders/data.parquet"}]
    loads = [{"table": "A.B.C", "from": "ORDERS", "mode": "append", "allow_empty": True}]
    with pytest.raises(ConfigError, match=r"loads\[0\] \(A.B.C\).allow_empty: applies to mode: replace only"):
        load_exports(write_config(tmp_path / "l.yaml", exports, loads))


def load_failing_before(step: str, config: Path, env: dict, latest: dict[str, Any]) -> None:
    """The list's first load run directly, with a fault raised just before `step`."""
    spec: LoadSpec = load_exports(config).loads[0]
    store = s3_store(env["AWS_ENDPOINT_URL"])
    source = resolve_source(spec, store, latest)
    session = Session(deployment_from_env(env).resources["snowflake_load"], logging.getLogger("test"), "{}")

    def fail(reached: str) -> None:
        if reached == step:
            raise RuntimeError(f"injected before {step}")

    try:
        with pytest.raises(RuntimeError, match=f"injected before {step}"):
            run_load(spec, source, session, store, None, str(uuid.uuid4()), fail)
    finally:
        session.close()


def test_append_retried_adds_no_row_twice_and_a_failed_commit_adds_none(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    exports = [{"table": "NATION", "s3_path": "exports/nation/data.parquet", "max_rows_per_file": 10}]
    loads = [load_entry(schema, "NATIONS", **{"from": "NATION", "mode": "append"})]
    config = write_config(tmp_path / "l.yaml", exports, loads)
    defs = build_definitions(config, production_env)
    instance = dg.DagsterInstance.ephemeral()
    result = run(defs, instance)
    assert result.success, failure(result)
    target = f"{DB}.{schema}.NATIONS"
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {target}") == [(25,)]
    # The same files again (a retry of the load alone): all skipped, nothing added.
    result = run(defs, instance, [f"{DB}/{schema}/NATIONS"])
    assert result.success, failure(result)
    md = metadata(result, f"{DB}/{schema}/NATIONS")
    assert md["rows_loaded"] == 0 and md["files_skipped"] == 3 and md["dagster/row_count"] == 25
    ledger = fake_snowflake.execute(
        f"SELECT FILE, ROW_COUNT FROM {DB}.{schema}.DATA_MIGRATION_LOADED_FILES "
        "WHERE FILE <> 'data-migration:lock' ORDER BY FILE"
    )
    assert [count for _, count in ledger] == [10, 10, 5]

    # A new export generation, and a failure just before COMMIT: rolled back, then loaded once.
    assert run(defs, instance, ["NATION"]).success
    load_failing_before("commit", config, production_env, metadata_of(instance, "NATION"))
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {target}") == [(25,)]
    result = run(defs, instance, [f"{DB}/{schema}/NATIONS"])
    assert result.success and metadata(result, f"{DB}/{schema}/NATIONS")["rows_loaded"] == 25
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {target}") == [(50,)]


def test_merge_updates_changed_rows_and_refuses_duplicate_or_null_keys(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    def drop(rows: list[tuple[Any, str]]) -> None:
        ids, names = zip(*rows, strict=True)
        table = pa.table({"ID": pa.array(ids, pa.int64()), "NAME": pa.array(names)})
        s3.put_object(Bucket=BUCKET, Key="inbound/people.parquet", Body=parquet_bytes(table))

    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="merge", keys=["ID"])]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    instance = dg.DagsterInstance.ephemeral()
    key = f"{DB}/{schema}/PEOPLE"
    drop([(1, "ann"), (2, "bob"), (3, "cy")])
    assert run(defs, instance).success
    drop([(2, "robert"), (4, "dee")])
    result = run(defs, instance)
    assert result.success, failure(result)
    md = metadata(result, key)
    assert (md["rows_inserted"], md["rows_updated"], md["dagster/row_count"]) == (1, 1, 4)
    assert fake_snowflake.execute(f"SELECT ID, NAME FROM {DB}.{schema}.PEOPLE ORDER BY ID") == [
        (1, "ann"), (2, "robert"), (3, "cy"), (4, "dee"),
    ]  # fmt: skip
    assert describe(fake_snowflake, f"{DB}.{schema}.PEOPLE")[0] == ("ID", "NUMBER(38,0)")

    drop([(5, "eve"), (5, "eva")])
    result = run(defs, instance)
    assert not result.success and "more than one row for a key (ID): ID=5 (2 rows)" in failure(result)
    drop([(None, "nobody"), (6, "fay")])  # type: ignore[list-item]
    result = run(defs, instance)
    assert not result.success and "1 row(s) of the files have a NULL in the key (ID)" in failure(result)
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.PEOPLE") == [(4,)]


def test_rows_that_differ_from_the_manifest_fail_the_load_and_change_nothing(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    import json

    exports = [{"table": "REGION", "s3_path": "exports/region/data.parquet", "max_rows_per_file": 3}]
    loads = [load_entry(schema, "REGIONS", **{"from": "REGION", "mode": "replace", "create": "never"})]
    defs = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env)
    instance = dg.DagsterInstance.ephemeral()
    result = run(defs, instance)
    assert not result.success and 'REGIONS" does not exist; create it, or set create: if_missing' in failure(result)
    fake_snowflake.execute(
        f"CREATE TABLE {DB}.{schema}.REGIONS (R_REGIONKEY NUMBER(38,0), R_NAME VARCHAR, R_COMMENT VARCHAR)"
    )
    # A manifest whose first part claims a row more than the file holds (its total to match).
    key = "exports/region/data/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    manifest["files"][0]["rows"] += 1
    manifest["row_count"] += 1
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    result = run(defs, instance, [f"{DB}/{schema}/REGIONS"])
    assert not result.success
    assert "Snowflake loaded 3 of its rows (status LOADED), but 4 were recorded" in failure(result)
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.REGIONS") == [(0,)]


def test_with_an_external_stage_snowflake_reads_the_bucket_and_nothing_is_put(
    stage_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    exports = [{"table": "CUSTOMER", "s3_path": "exports/customer/data.parquet", "max_rows_per_file": 400}]
    loads = [load_entry(schema, "CUSTOMERS", **{"from": "CUSTOMER", "mode": "append"})]
    before = len(fake_snowflake.recorder.queries)
    result = run(
        build_definitions(write_config(tmp_path / "l.yaml", exports, loads), stage_env), dg.DagsterInstance.ephemeral()
    )
    assert result.success, failure(result)
    md = metadata(result, f"{DB}/{schema}/CUSTOMERS")
    assert md["rows_loaded"] == 1500 and md["files_loaded"] == 4 and md["stage"] == 'external stage "EXPORTS"'
    sent = fake_snowflake.recorder.queries[before:]
    assert not any(q.startswith("PUT") for q in sent)
    (copy,) = [q for q in sent if q.startswith("COPY INTO")]
    assert copy.startswith(f'COPY INTO "{DB}"."{schema}"."CUSTOMERS__DM_LANDING_')
    # A transformation from the stage (over the bucket's root), the files named by their keys.
    assert 'FROM @"EXPORTS") FILES = (\'exports/customer/data/2' in copy and copy.count("/data-0000") == 4
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.CUSTOMERS") == [(1500,)]


def test_the_load_role_is_the_loads_own(production_env: dict):
    resources = deployment_from_env(
        {**production_env, "SNOWFLAKE_ROLE": "READER", "SNOWFLAKE_LOAD_ROLE": "LOADER"}
    ).resources
    assert resources["snowflake"].role == "READER" and resources["snowflake_load"].role == "LOADER"
    same = deployment_from_env({**production_env, "SNOWFLAKE_ROLE": "READER"}).resources
    assert same["snowflake_load"].role == "READER"
    with pytest.raises(SettingsError, match="SNOWFLAKE_LOAD_ROLE='x; drop role y'"):
        deployment_from_env({**production_env, "SNOWFLAKE_LOAD_ROLE": "x; drop role y"})


def test_a_load_runs_after_its_export_and_a_lone_load_names_what_to_materialize(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    exports = [{"table": "REGION", "s3_path": "exports/region.parquet"}]
    loads = [load_entry(schema, "REGIONS", **{"from": "REGION", "mode": "replace"})]
    defs = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env)
    load_key = dg.AssetKey([DB, schema, "REGIONS"])
    graph = defs.resolve_asset_graph()
    assert graph.get(load_key).parent_keys == {dg.AssetKey("REGION")}
    result = run(defs, dg.DagsterInstance.ephemeral(), [load_key.to_user_string()])
    assert not result.success
    assert "exports[0] (REGION) has no materialization yet: materialize it first" in failure(result)
