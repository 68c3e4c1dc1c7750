"""Loads against Snowflake's documented behaviour (issue 21's bugs and rules, issue 26's sweep),
on the embedded emulator, which enforces each rule here as the page named beside it says:

- a MERGE's output has one column per clause it has (sql-reference/sql/merge);
- a temporary stage belongs to its session and goes with it (sql-reference/sql/create-stage);
- DDL commits the open transaction (sql-reference/transactions);
- a VALUES clause holds at most 16,384 rows (sql-reference/sql/insert);
- a SWAP exchanges the tables whole, their comments with them (sql-reference/sql/alter-table);
- an INSERT OVERWRITE is one statement: a failing one leaves the old rows (sql-reference/sql/insert).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
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


def table_oid(schema: str, name: str) -> int:
    """The emulator's own identity of a table (DuckDB's table_oid): it follows the table through a
    rename, so a table swapped or renamed into the name has another one."""
    import fakesnow.server

    with contextlib.closing(fakesnow.server.shared_fs.duck_conn.cursor()) as duck:
        (oid,) = duck.execute(
            "SELECT table_oid FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
            [DB, schema, name],
        ).fetchone()
    return int(oid)


def test_a_replace_into_an_existing_target_keeps_its_identity(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 32, item 3: a replace of an existing target is one `INSERT OVERWRITE INTO <target>`
    (https://docs.snowflake.com/en/sql-reference/sql/insert: OVERWRITE "Specifies that the target
    table should be truncated before inserting the values into the table"): the table stays the
    one it was, so its owner, grants, policies, tags, comment, streams and Time Travel stay with
    it. No table is swapped in (which needed OWNERSHIP of the target: sql-reference/sql/alter-table),
    and nothing is written into the user's comment. (The emulator keeps no grants, so SHOW GRANTS
    cannot be compared here; the table's own identity, its comment and the statements can.)"""
    fake_snowflake.execute("CREATE TABLE PEOPLE (ID NUMBER(38,0), NAME VARCHAR)", DB, schema)
    fake_snowflake.execute("INSERT INTO PEOPLE VALUES (7, 'old')", DB, schema)
    fake_snowflake.execute("ALTER TABLE PEOPLE SET COMMENT = 'owned by HR'", DB, schema)
    before = table_oid(schema, "PEOPLE")
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    drop_file(s3, "inbound/people.parquet", {"ID": pa.array([1, 2], pa.int64()), "NAME": ["ann", "bob"]})
    first = len(fake_snowflake.recorder.queries)
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    sent = [q for q in fake_snowflake.recorder.queries[first:] if schema in q]

    target = f'"{DB}"."{schema}"."PEOPLE"'
    assert fake_snowflake.execute(f"SELECT ID, NAME FROM {target} ORDER BY ID") == [(1, "ann"), (2, "bob")]
    assert table_oid(schema, "PEOPLE") == before
    comments = fake_snowflake.execute(
        f"SELECT TABLE_NAME, COMMENT FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}'"
    )
    assert comments == [("PEOPLE", "owned by HR")]
    assert not [q for q in sent if "SWAP WITH" in q.upper()]
    on_target = re.compile(rf"^\s*(?:ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?|COMMENT\s+ON\s+TABLE\s+){re.escape(target)}\s")
    assert not [q for q in sent if on_target.match(q)], "the target itself was altered"
    assert not [q for q in sent if "COMMENT" in q.upper() and re.search(rf"{re.escape(target)}(?!\S)", q)]
    assert len([q for q in sent if q.startswith(f"INSERT OVERWRITE INTO {target} ")]) == 1
    assert not [q for q in sent if "__DM_NEW_" in q]  # no new table for a target that exists
    assert metadata(result, f"{DB}/{schema}/PEOPLE")["target_created"] is False


def test_a_replace_whose_rows_do_not_fit_the_targets_types_fails_and_leaves_the_old_rows(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """The INSERT OVERWRITE casts the landing rows to the target's types; a value that does not cast
    fails the statement, and one statement is one transaction (sql-reference/transactions): the
    target keeps its old rows (sql-reference/sql/insert; the emulator runs fakesnow's DELETE and
    INSERT as one)."""
    fake_snowflake.execute("CREATE TABLE PEOPLE (ID NUMBER(38,0))", DB, schema)
    fake_snowflake.execute("INSERT INTO PEOPLE VALUES (7), (8)", DB, schema)
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    env = {**production_env, "DATA_MIGRATION_MAX_RETRIES": "0"}
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), env)
    drop_file(s3, "inbound/people.parquet", {"ID": ["1", "not a number"]})
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert not result.success
    assert "not a number" in failure(result)
    assert fake_snowflake.execute(f"SELECT ID FROM {DB}.{schema}.PEOPLE ORDER BY ID") == [(7,), (8,)]
    tables = fake_snowflake.execute(
        f"SELECT TABLE_NAME FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}'"
    )
    assert tables == [("PEOPLE",)]


def test_a_target_an_older_release_left_marked_after_its_swap_gets_its_comment_back(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """The previous release swapped a new table in and restored the target's comment after: a run
    killed between the two left its mark (which records the target's own comment) on the target,
    and the old rows under `<target>__DM_NEW_<run>` with the user's comment. The sweep still puts
    that right: the comment back, those old rows dropped."""
    killed = str(uuid.uuid4())
    suffix = killed.replace("-", "")[:12].upper()
    legacy = json.dumps(
        {"app": "data-migration", "load": f'"{DB}"."{schema}"."PEOPLE"', "run_id": killed,
         "target_comment": "owned by HR"}, separators=(",", ":"),
    )  # fmt: skip
    for sql in (
        f"CREATE TABLE PEOPLE (ID NUMBER(38,0)) COMMENT = {string_literal(legacy)}",
        f"CREATE TABLE PEOPLE__DM_NEW_{suffix} (ID NUMBER(38,0)) COMMENT = 'owned by HR'",
    ):
        fake_snowflake.execute(sql, DB, schema)
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    drop_file(s3, "inbound/people.parquet", {"ID": pa.array([1, 2], pa.int64())})
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    swept = metadata(result, f"{DB}/{schema}/PEOPLE")["helpers_swept"]
    assert [(entry["table"], entry["run_id"]) for entry in swept] == [(f"PEOPLE__DM_NEW_{suffix}", killed)]
    comments = fake_snowflake.execute(
        f"SELECT TABLE_NAME, COMMENT FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}'"
    )
    assert comments == [("PEOPLE", "owned by HR")]


def test_the_next_run_drops_only_the_helpers_an_earlier_run_of_the_same_load_left(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 26: a run killed mid-way leaves its landing table (marked with a COMMENT naming the
    project, the load and the run) and, for a replace creating its target, its new table (no
    comment: it becomes the target; its landing table, which outlives it, vouches for it). The next
    run of that load drops them, and an older release's marked new table, and nothing else: not a
    look-alike without the mark or a vouching landing table, not another load's helper, not a
    user's table."""
    target = f"{DB}.{schema}.PEOPLE"
    killed, older = str(uuid.uuid4()), str(uuid.uuid4())
    suffix, older_suffix = (run.replace("-", "")[:12].upper() for run in (killed, older))
    ours = helper_mark(f'"{DB}"."{schema}"."PEOPLE"', killed)
    theirs = helper_mark(f'"{DB}"."{schema}"."OTHER"', killed)
    older_mark = helper_mark(f'"{DB}"."{schema}"."PEOPLE"', older)
    for sql in (
        f"CREATE TABLE PEOPLE__DM_LANDING_{suffix} (ID NUMBER(38,0)) COMMENT = {string_literal(ours)}",
        f"CREATE TABLE PEOPLE__DM_NEW_{suffix} (ID NUMBER(38,0))",
        f"CREATE TABLE PEOPLE__DM_NEW_{older_suffix} (ID NUMBER(38,0)) COMMENT = {string_literal(older_mark)}",
        "CREATE TABLE PEOPLE__DM_NEW_AAAAAAAAAAAA (ID NUMBER(38,0)) COMMENT = 'a user table'",
        "CREATE TABLE PEOPLE__DM_NEW_CCCCCCCCCCCC (ID NUMBER(38,0))",
        f"CREATE TABLE PEOPLE__DM_LANDING_BBBBBBBBBBBB (ID NUMBER(38,0)) COMMENT = {string_literal(theirs)}",
        "CREATE TABLE PEOPLE__DM_NEW_BBBBBBBBBBBB (ID NUMBER(38,0))",  # vouched for by another load's table
        f"CREATE TABLE PEOPLE__DM_KEEP (ID NUMBER(38,0)) COMMENT = {string_literal(ours)}",
    ):
        fake_snowflake.execute(sql, DB, schema)
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    drop_file(s3, "inbound/people.parquet", {"ID": pa.array([1, 2], pa.int64())})
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    swept = metadata(result, f"{DB}/{schema}/PEOPLE")["helpers_swept"]
    assert {(entry["table"], entry["run_id"]) for entry in swept} == {
        (f"PEOPLE__DM_NEW_{older_suffix}", older),
        (f"PEOPLE__DM_NEW_{suffix}", killed),
        (f"PEOPLE__DM_LANDING_{suffix}", killed),
    }
    assert swept[-1]["table"] == f"PEOPLE__DM_LANDING_{suffix}"  # after the new table it vouches for
    tables = sorted(row[0] for row in fake_snowflake.execute(
        f"SELECT TABLE_NAME FROM {DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}'"
    ))  # fmt: skip
    assert tables == [
        "PEOPLE",
        "PEOPLE__DM_KEEP",
        "PEOPLE__DM_LANDING_BBBBBBBBBBBB",
        "PEOPLE__DM_NEW_AAAAAAAAAAAA",
        "PEOPLE__DM_NEW_BBBBBBBBBBBB",
        "PEOPLE__DM_NEW_CCCCCCCCCCCC",
    ]
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


def test_overlapping_runs_and_attempts_of_one_load_never_drop_each_others_helpers(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Issue 32: helper names came from the run id only, and the sweep at the start of a run
    dropped every marked helper of its target, those of a run still in progress too (a schedule's
    tick and a launch by hand; Dagster resuming a run whose worker is still alive), so a swap could
    exchange the wrong table. Now every attempt names its helpers anew, and the sweep leaves the
    helpers of a run the Dagster instance has unfinished (or of its own run), dropping them once
    that run has finished."""
    instance = dg.DagsterInstance.ephemeral()
    loads = [load_entry(schema, "PEOPLE", s3_path="inbound/people.parquet", mode="replace")]
    defs = build_definitions(write_config(tmp_path / "l.yaml", [], loads), production_env)
    drop_file(s3, "inbound/people.parquet", {"ID": pa.array([1, 2, 3], pa.int64())})
    load = f'"{DB}"."{schema}"."PEOPLE"'
    # Another run of this load, in progress: its landing table, mid-way.
    other = instance.create_run_for_job(
        defs.resolve_job_def("all_exports"), run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
    )
    busy = "PEOPLE__DM_LANDING_0123456789AB"
    fake_snowflake.execute(
        f"CREATE TABLE {busy} (ID NUMBER(38,0)) COMMENT = {string_literal(helper_mark(load, other.run_id))}", DB, schema
    )
    sent_before = len(fake_snowflake.recorder.queries)
    first = run(defs, instance)
    assert first.success, failure(first)
    assert metadata(first, f"{DB}/{schema}/PEOPLE")["helpers_swept"] == []
    assert busy in {row[1] for row in fake_snowflake.execute(f"SHOW TABLES IN SCHEMA {DB}.{schema}")}

    # Two attempts of one run (the same run id) name their landing tables apart.
    config = write_config(tmp_path / "l.yaml", [], loads)
    spec = load_exports(config).loads[0]
    store = s3_store(production_env["AWS_ENDPOINT_URL"])
    session = Session(deployment_from_env(production_env).resources["snowflake_load"], logging.getLogger("t"), "{}")
    try:
        same_run = str(uuid.uuid4())
        for _ in range(2):  # as the asset asks the instance: the other run, and this one, are unfinished
            unfinished = {other.run_id, same_run}.__contains__
            run_load(spec, resolve_source(spec, store, None), session, store, None, same_run, still_running=unfinished)
    finally:
        session.close()
    landings = {
        match.group(0)
        for sql in fake_snowflake.recorder.queries[sent_before:]
        if (match := re.search(r"PEOPLE__DM_LANDING_[0-9A-F]{12}", sql)) and sql.startswith("CREATE")
    }
    assert len(landings) == 3  # the first run's, and one for each attempt of the same run

    # Once the other run has finished, the next run drops its helper.
    instance.report_run_failed(other)
    last = run(defs, instance)
    assert last.success, failure(last)
    assert [entry["table"] for entry in metadata(last, f"{DB}/{schema}/PEOPLE")["helpers_swept"]] == [busy]
    assert fake_snowflake.execute(f"SELECT COUNT(*) FROM {DB}.{schema}.PEOPLE") == [(3,)]
