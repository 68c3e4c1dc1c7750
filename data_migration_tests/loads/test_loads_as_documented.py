"""Loads against Snowflake's documented behaviour (issue 21's bugs and rules, issue 26's sweep),
on the embedded emulator, which enforces each rule here as the page named beside it says:

- a MERGE's output has one column per clause it has (sql-reference/sql/merge);
- a temporary stage belongs to its session and goes with it (sql-reference/sql/create-stage);
- DDL commits the open transaction (sql-reference/transactions);
- a VALUES clause holds at most 16,384 rows (sql-reference/sql/insert);
- a SWAP exchanges the tables whole, their comments with them (sql-reference/sql/alter-table).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import snowflake.connector

from data_migration.config import load_exports
from data_migration.config.names import parse_object_name, string_literal
from data_migration.definitions import build_definitions
from data_migration.loads.apply import Session, run_load
from data_migration.loads.sources import resolve_source
from data_migration.loads.sql import MAX_VALUES_ROWS, helper_mark, ledger_sql, record_files_sql
from data_migration.resources import deployment_from_env
from data_migration_tests.support import (
    BUCKET,
    Snowflake,
    failure,
    load_entry,
    metadata,
    parquet_bytes,
    run,
    s3_store,
    write_config,
)
from data_migration_tests.support import LOAD_DB as DB

# The emulator's rules -----------------------------------------------------------------------------


def test_ddl_commits_the_open_transaction(fake_snowflake: Snowflake, schema: str):
    """https://docs.snowflake.com/en/sql-reference/transactions: "Each DDL statement executes as a
    separate transaction … implicitly commits the active transaction"."""
    with fake_snowflake.connect(DB, schema) as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE T (A NUMBER(38,0))")
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO T VALUES (1)")
        cursor.execute("CREATE TABLE U (A NUMBER(38,0))")  # commits the INSERT
        cursor.execute("INSERT INTO T VALUES (2)")  # autocommit again
        cursor.execute("ROLLBACK")
        cursor.execute("SELECT A FROM T ORDER BY A")
        assert cursor.fetchall() == [(1,), (2,)]
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO T VALUES (3)")
        cursor.execute("ROLLBACK")  # no DDL in between: rolled back
        cursor.execute("SELECT COUNT(*) FROM T")
        assert cursor.fetchall() == [(2,)]


def test_a_sessions_open_transaction_and_temporary_stage_end_with_it(fake_snowflake: Snowflake, schema: str):
    """https://docs.snowflake.com/en/sql-reference/sql/create-stage: a temporary stage is dropped at
    the end of the session, files and all; https://docs.snowflake.com/en/sql-reference/transactions:
    an open transaction is rolled back when its session ends."""
    fake_snowflake.execute("CREATE TABLE T (A NUMBER(38,0))", DB, schema)
    with fake_snowflake.connect(DB, schema) as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TEMPORARY STAGE S1")
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO T VALUES (1)")
    with fake_snowflake.connect(DB, schema) as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TEMPORARY STAGE S1")  # the name is free again
        cursor.execute("SELECT COUNT(*) FROM T")
        assert cursor.fetchall() == [(0,)]


def test_a_values_clause_holds_at_most_16384_rows_and_the_ledger_is_written_in_batches(
    fake_snowflake: Snowflake, schema: str
):
    """https://docs.snowflake.com/en/sql-reference/sql/insert: VALUES is "limited to 16,384 rows"."""
    target = parse_object_name(f"{DB}.{schema}.T")
    files = [(f"s3://b/part-{i}.parquet", f"id-{i}", 1) for i in range(MAX_VALUES_ROWS + 1)]
    statements = record_files_sql(target, files, "run")
    assert len(statements) == 2
    with fake_snowflake.connect(DB, schema) as conn:
        cursor = conn.cursor()
        cursor.execute(ledger_sql(target))
        with pytest.raises(snowflake.connector.ProgrammingError, match="exceeds the limit of 16,384"):
            cursor.execute(statements[0].replace(" VALUES ", " VALUES ('x', 'y', 'z', 1, 'r', SYSDATE()), ", 1))
        cursor.execute("BEGIN")
        for sql in statements:
            cursor.execute(sql)
        cursor.execute("COMMIT")
        cursor.execute("SELECT COUNT(*) FROM DATA_MIGRATION_LOADED_FILES")
        assert cursor.fetchall() == [(MAX_VALUES_ROWS + 1,)]


# Loads --------------------------------------------------------------------------------------------


def drop_file(s3: Any, key: str, columns: dict[str, list]) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(pa.table(columns)))


def test_a_merge_whose_every_column_is_a_key_counts_its_inserts(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 21, bug 2: with no column to update the MERGE has no WHEN MATCHED clause, and its
    output has no "number of rows updated" (https://docs.snowflake.com/en/sql-reference/sql/merge)."""
    loads = [load_entry(schema, "PAIRS", s3_path="inbound/pairs.parquet", mode="merge", keys=["A", "B"])]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    instance = dg.DagsterInstance.ephemeral()
    drop_file(s3, "inbound/pairs.parquet", {"A": pa.array([1, 2], pa.int64()), "B": ["x", "y"]})
    assert run(defs, instance).success
    drop_file(s3, "inbound/pairs.parquet", {"A": pa.array([2, 3], pa.int64()), "B": ["y", "z"]})
    result = run(defs, instance)
    assert result.success, failure(result)
    md = metadata(result, f"{DB}/{schema}/PAIRS")
    assert (md["rows_inserted"], md["rows_updated"], md["dagster/row_count"]) == (1, 0, 3)


def test_two_loads_in_one_run_through_the_internal_stage_each_have_their_own_stage(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 21, bug 3: without SNOWFLAKE_EXPORT_STAGE every load PUTs its files into a temporary
    stage of its own; the second failed with "Object 'DM_STAGE_<run>' already exists"."""
    exports = [
        {"table": "NATION", "s3_path": "exports/nation/data.parquet"},
        {"table": "REGION", "s3_path": "exports/region/data.parquet"},
    ]
    loads = [
        load_entry(schema, "NATIONS", **{"from": "NATION", "mode": "replace"}),
        load_entry(schema, "REGIONS", **{"from": "REGION", "mode": "append"}),
    ]
    defs = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env)
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    stages = {metadata(result, f"{DB}/{schema}/{t}")["stage"] for t in ("NATIONS", "REGIONS")}
    assert len(stages) == 2 and all(s.startswith("temporary internal stage") for s in stages)
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.NATIONS") == [(25,)]
    # Their sessions ended with the run, and their stages with them.
    left = fake_snowflake.execute(
        f"SELECT name FROM _fs_global._fs_information_schema._fs_stages WHERE schema_name = '{schema}'"
    )
    assert left == []


def test_a_replace_keeps_the_targets_comment(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """The new table carries the project's mark while it is filled; the swap then carries the
    target's own comment, as it carries every property (sql-reference/sql/alter-table)."""
    fake_snowflake.execute("CREATE TABLE PEOPLE (ID NUMBER(38,0), NAME VARCHAR) COMMENT = 'owned by HR'", DB, schema)
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    drop_file(s3, "inbound/people.parquet", {"ID": pa.array([1], pa.int64()), "NAME": ["ann"]})
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    comments = fake_snowflake.execute(
        f"SELECT TABLE_NAME, COMMENT FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}'"
    )
    assert comments == [("PEOPLE", "owned by HR")]


def test_the_next_run_drops_only_the_helpers_an_earlier_run_of_the_same_load_left(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 26: a run killed mid-way leaves its landing and new tables (marked with a COMMENT naming
    the project, the load and the run); the next run of that load drops them, and nothing else: not
    a look-alike without the mark, not another load's helper, not a user's table."""
    target = f"{DB}.{schema}.PEOPLE"
    killed = str(uuid.uuid4())
    suffix = killed.replace("-", "")[:12].upper()
    ours = helper_mark(f'"{DB}"."{schema}"."PEOPLE"', killed)
    theirs = helper_mark(f'"{DB}"."{schema}"."OTHER"', killed)
    for sql in (
        f"CREATE TABLE PEOPLE__DM_LANDING_{suffix} (ID NUMBER(38,0)) COMMENT = {string_literal(ours)}",
        f"CREATE TABLE PEOPLE__DM_NEW_{suffix} (ID NUMBER(38,0)) COMMENT = {string_literal(ours)}",
        "CREATE TABLE PEOPLE__DM_NEW_AAAAAAAAAAAA (ID NUMBER(38,0)) COMMENT = 'a user table'",
        f"CREATE TABLE PEOPLE__DM_LANDING_BBBBBBBBBBBB (ID NUMBER(38,0)) COMMENT = {string_literal(theirs)}",
        f"CREATE TABLE PEOPLE__DM_KEEP (ID NUMBER(38,0)) COMMENT = {string_literal(ours)}",
    ):
        fake_snowflake.execute(sql, DB, schema)
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    drop_file(s3, "inbound/people.parquet", {"ID": pa.array([1, 2], pa.int64())})
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    swept = metadata(result, f"{DB}/{schema}/PEOPLE")["helpers_swept"]
    assert sorted(entry["table"] for entry in swept) == [f"PEOPLE__DM_LANDING_{suffix}", f"PEOPLE__DM_NEW_{suffix}"]
    assert {entry["run_id"] for entry in swept} == {killed}
    tables = sorted(row[0] for row in fake_snowflake.execute(
        f"SELECT TABLE_NAME FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}'"
    ))  # fmt: skip
    assert tables == ["PEOPLE", "PEOPLE__DM_KEEP", "PEOPLE__DM_LANDING_BBBBBBBBBBBB", "PEOPLE__DM_NEW_AAAAAAAAAAAA"]
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {target}") == [(2,)]


class _RollbackFails(Session):
    def run(self, sql: str, **kwargs: Any) -> list[dict[str, Any]]:
        if sql == "ROLLBACK":
            raise snowflake.connector.errors.OperationalError("connection reset during ROLLBACK")
        return super().run(sql, **kwargs)


def test_after_a_failed_rollback_the_clean_up_runs_in_a_new_session_and_commits_nothing(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 21, item 6: the clean-up's DROP TABLE is DDL, which would commit the half-done append
    on the session whose ROLLBACK failed; the load ends that session (Snowflake rolls back an open
    transaction when its session ends) and cleans up on a new one."""
    loads = [load_entry(schema, "EVENTS", s3_path="inbound/events.parquet", mode="append")]
    config = write_config(tmp_path / "l.yaml", [], loads)
    drop_file(s3, "inbound/events.parquet", {"ID": pa.array([1, 2, 3], pa.int64())})
    spec = load_exports(config).loads[0]
    store = s3_store(production_env["AWS_ENDPOINT_URL"])
    session = _RollbackFails(
        deployment_from_env(production_env).resources["snowflake_load"], logging.getLogger("t"), "{}"
    )

    def fail(step: str) -> None:
        if step == "commit":
            raise RuntimeError("injected before commit")

    try:
        with pytest.raises(RuntimeError, match="injected before commit"):
            run_load(spec, resolve_source(spec, store, None), session, store, None, str(uuid.uuid4()), fail)
    finally:
        session.close()
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.EVENTS") == [(0,)]
    ledger = fake_snowflake.execute(f"SELECT FILE FROM {DB}.{schema}.DATA_MIGRATION_LOADED_FILES")
    assert ledger == [("data-migration:lock",)]  # no file recorded
    tables = fake_snowflake.execute(
        f"SELECT TABLE_NAME FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}' ORDER BY 1"
    )
    assert tables == [("DATA_MIGRATION_LOADED_FILES",), ("EVENTS",)]


def test_matched_by_column_name_an_empty_parquet_value_fails_as_documented_and_the_load_shape_keeps_it(
    fake_snowflake: Snowflake, schema: str, tmp_path: Path
):
    """https://docs.snowflake.com/en/sql-reference/sql/copy-into-table (MATCH_BY_COLUMN_NAME): for
    Parquet, "an empty column value (for example, "col1": "") produces an error". The emulator
    refuses it as documented; the load's transformation (`$1:"S"::VARCHAR`) loads it exactly."""
    from data_migration.loads.sql import copy_sql, load_column
    from data_migration.local.stages import folder_stage

    root = tmp_path / "bucket"
    (root / "in").mkdir(parents=True)
    (root / "in" / "a.parquet").write_bytes(parquet_bytes(pa.table({"S": ["", "x"]})))
    fake_snowflake.recorder.app.stages["FOLDER"] = folder_stage("FOLDER", root)
    try:
        with fake_snowflake.connect(DB, schema) as conn:
            cursor = conn.cursor()
            cursor.execute("CREATE TABLE T (S VARCHAR)")
            with pytest.raises(snowflake.connector.ProgrammingError, match="empty value in column 'S'"):
                cursor.execute(
                    "COPY INTO T FROM '@\"FOLDER\"/in/' FILES = ('a.parquet') FILE_FORMAT = (TYPE = PARQUET) "
                    "MATCH_BY_COLUMN_NAME = CASE_SENSITIVE ON_ERROR = ABORT_STATEMENT"
                )
            cursor.execute(
                copy_sql(parse_object_name("T"), [load_column("S", "VARCHAR")], '@"FOLDER"', ["in/a.parquet"])
            )
            cursor.execute("SELECT S FROM T ORDER BY S")
            assert cursor.fetchall() == [("",), ("x",)]
    finally:
        fake_snowflake.recorder.app.stages.pop("FOLDER", None)


@pytest.mark.parametrize("staged", ["internal stage", "external stage"])
def test_empty_strings_and_backslash_n_arrive_as_exported(
    staged: str, production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any, request
):
    """Issue 21, items 4 and 5: '' and the two characters \\N load as themselves, NULL as NULL.
    (Under MATCH_BY_COLUMN_NAME, NULL_IF's default `\\N` would have turned the second into NULL, and
    the first would have failed; a transformation applies neither.)"""
    env = request.getfixturevalue("stage_env") if staged == "external stage" else production_env
    values = ["", "\\N", None, "x", "NULL"]
    drop_file(s3, "inbound/strings.parquet", {"ID": pa.array(range(len(values)), pa.int64()), "S": values})
    loads = [load_entry(schema, "STRINGS", s3_path="inbound/strings.parquet", mode="replace")]
    result = run(build_definitions(write_config(tmp_path / "l.yaml", [], loads), env), dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    assert metadata(result, f"{DB}/{schema}/STRINGS")["stage"].startswith(
        staged.split()[0].replace("internal", "temporary")
    )
    assert [s for _, s in fake_snowflake.execute(f"SELECT ID, S FROM {DB}.{schema}.STRINGS ORDER BY ID")] == values


def test_two_runs_of_one_append_never_load_the_same_files_twice(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 21, item 10: run B reads the ledger (the files are new), then run A loads and commits
    them, then B goes on. Inside its transaction B first takes the target's lock (an UPDATE, which
    waits for any other append's transaction: sql-reference/transactions, resource locking), reads
    the ledger again, finds the files taken, adds nothing, and fails as transient; its retry skips
    them."""
    import threading

    from data_migration.loads.apply import ConcurrentAppend

    loads = [load_entry(schema, "EVENTS", s3_path="inbound/events/", mode="append")]
    config = write_config(tmp_path / "l.yaml", [], loads)
    for name, ids in (("a", [1, 2]), ("b", [3])):
        drop_file(s3, f"inbound/events/{name}.parquet", {"ID": pa.array(ids, pa.int64())})
    spec = load_exports(config).loads[0]
    store = s3_store(production_env["AWS_ENDPOINT_URL"])
    resource = deployment_from_env(production_env).resources["snowflake_load"]
    planned, go_on, outcome = threading.Event(), threading.Event(), {}

    def pause_before_the_transaction(step: str) -> None:
        if step == "append":
            planned.set()
            assert go_on.wait(60)

    def run_b() -> None:
        session = Session(resource, logging.getLogger("b"), "{}")
        try:
            source = resolve_source(spec, store, None)
            run_load(spec, source, session, store, None, str(uuid.uuid4()), pause_before_the_transaction)
        except Exception as error:  # noqa: BLE001 - the test reads it below
            outcome["b"] = error
        finally:
            session.close()

    b = threading.Thread(target=run_b)
    b.start()
    assert planned.wait(60)
    a = Session(resource, logging.getLogger("a"), "{}")
    try:
        done = run_load(spec, resolve_source(spec, store, None), a, store, None, str(uuid.uuid4()))
    finally:
        a.close()
    assert done.rows_loaded == 3
    go_on.set()
    b.join(60)
    assert isinstance(outcome.get("b"), ConcurrentAppend), outcome
    assert "another run loaded 2 of these files" in str(outcome["b"])
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.EVENTS") == [(3,)]

    retry = Session(resource, logging.getLogger("retry"), "{}")
    try:
        again = run_load(spec, resolve_source(spec, store, None), retry, store, None, str(uuid.uuid4()))
    finally:
        retry.close()
    assert (again.rows_loaded, len(again.skipped)) == (0, 2)
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.EVENTS") == [(3,)]
