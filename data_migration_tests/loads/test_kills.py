"""Issue 26: a process killed with SIGKILL (not an exception: nothing of the project's runs after
it) at each step of each load mode (a replace both into a target that exists and into one it
creates) and of an unload, then run again. The kill comes from the emulator's side, as the
statement of that step arrives: before it runs, or after it ran and before the client hears
back. After the kill the target holds exactly what it held before (or is still missing) or the
new data, never a mix; after one successful rerun the schema holds only the target, with its own
comment (and the append ledger), and the bucket only the export's manifest and the files it lists.

The dead client's session is ended as Snowflake ends it later (its open transaction rolled back,
its temporary stage dropped), and then no stage of the load's may remain either.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from data_migration.definitions import build_definitions
from data_migration_tests.support import (
    BUCKET,
    LOAD_DB,
    Snowflake,
    environment_without_settings,
    failure,
    metadata,
    parquet_bytes,
    run,
    write_config,
)

BIN = Path(sys.executable).parent
OLD = [(1, "ann"), (2, "bob"), (3, "cy")]
NEW = [(2, "robert"), (4, "dee")]
MERGED = [(1, "ann"), (2, "robert"), (3, "cy"), (4, "dee")]
APPENDED = sorted(OLD + NEW)

# (mode, the statement the kill comes with, before or after it runs, what the target may hold after
# the kill; None: no table). "create" is a replace into a target that does not exist yet.
KILL_POINTS = [
    ("replace", r"^PUT ", "before", [OLD]),  # staging
    ("replace", r"^COPY INTO ", "after", [OLD]),  # the landing table filled
    ("replace", r"^INSERT OVERWRITE INTO ", "before", [OLD]),
    ("replace", r"^INSERT OVERWRITE INTO ", "after", [NEW]),  # overwritten, nothing cleaned up
    ("create", r"^INSERT INTO .*__DM_NEW_", "after", [None]),  # the new table filled, under its helper name
    ("create", r" RENAME TO ", "before", [None]),
    ("create", r" RENAME TO ", "after", [NEW]),  # renamed in, nothing cleaned up
    ("append", r"^COPY INTO ", "after", [OLD]),
    ("append", r"^COMMIT", "before", [OLD]),  # inside the append's transaction
    ("append", r"^COMMIT", "after", [APPENDED]),
    ("merge", r"^MERGE ", "before", [OLD]),
    ("merge", r"^MERGE ", "after", [MERGED]),
]


def rows(fake: Snowflake, table: str) -> list[tuple[int, str]] | None:
    """The table's rows, or None when there is no such table."""
    database, schema, name = table.split(".")
    listed = fake.execute(
        f"SELECT 1 FROM {database}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}' AND TABLE_NAME = '{name}'"
    )
    if not listed:
        return None
    return [tuple(row) for row in fake.execute(f"SELECT ID, NAME FROM {table} ORDER BY ID")]  # type: ignore[misc]


def put_people(s3: Any, people: list[tuple[int, str]], key: str) -> None:
    ids, names = zip(*people, strict=True)
    table = pa.table({"ID": pa.array(ids, pa.int64()), "NAME": pa.array(names)})
    s3.put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(table))


def killed_run(fake: Snowflake, config: Path, env: dict[str, str], at: str, when: str, cwd: Path) -> str:
    """`data-migration run` in its own process, killed by the emulator at the statement `at`."""
    process = subprocess.Popen(
        [str(BIN / "data-migration"), "run", "--config", str(config)],
        env=environment_without_settings(**env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    fake.recorder.kill_at, fake.recorder.kill_when, fake.recorder.kill_pid = at, when, process.pid
    try:
        output, _ = process.communicate(timeout=300)
    finally:
        fake.recorder.kill_at = fake.recorder.kill_pid = None
    assert process.returncode == -signal.SIGKILL, f"not killed at {at!r} ({process.returncode}): {output[-3000:]}"
    killed, session = fake.recorder.killed, fake.recorder.killed_session
    fake.recorder.killed = fake.recorder.killed_session = None
    assert killed is not None and session
    # The dead client cannot log out. Snowflake ends its session later: a detached transaction
    # that blocks another is aborted after 5 minutes idle, and the session's temporary stage goes
    # with the session (https://docs.snowflake.com/en/sql-reference/transactions). Here, at once.
    fake.recorder.app.end_session(session)
    return killed


@pytest.mark.parametrize(("mode", "at", "when", "after_kill"), KILL_POINTS, ids=lambda v: str(v)[:24])
def test_a_load_killed_at_each_step_leaves_old_or_new_rows_and_the_rerun_leaves_no_helper(
    mode: str,
    at: str,
    when: str,
    after_kill: list,
    production_env: dict,
    fake_snowflake: Snowflake,
    schema: str,
    tmp_path: Path,
    s3: Any,
):
    target = f"{LOAD_DB}.{schema}.PEOPLE"
    key = f"inbound/{schema.lower()}/people.parquet"
    load_mode = "replace" if mode == "create" else mode
    loads = [{"table": target, "s3_path": key, "mode": load_mode, **({"keys": ["ID"]} if mode == "merge" else {})}]
    config = write_config(tmp_path / "l.yaml", [], loads)
    defs = build_definitions(config, production_env)
    comment = None
    if mode != "create":
        put_people(s3, OLD, key)
        assert run(defs, dg.DagsterInstance.ephemeral()).success
        comment = "owned by HR"
        fake_snowflake.execute(f"ALTER TABLE {target} SET COMMENT = '{comment}'")
    if mode == "append":  # a second file, not yet loaded
        key = key.replace("people.parquet", "more.parquet")
        config = write_config(tmp_path / "l.yaml", [], [{**loads[0], "s3_path": key.rsplit("/", 1)[0] + "/"}])
        defs = build_definitions(config, production_env)
    put_people(s3, NEW, key)

    killed_run(fake_snowflake, config, production_env, at, when, tmp_path)
    assert rows(fake_snowflake, target) in after_kill

    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success, failure(result)
    assert rows(fake_snowflake, target) == {"replace": NEW, "create": NEW, "append": APPENDED, "merge": MERGED}[mode]
    tables = fake_snowflake.execute(
        f"SELECT TABLE_NAME, COMMENT FROM {LOAD_DB}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '{schema}' "
        "ORDER BY TABLE_NAME"
    )
    expected = [("PEOPLE", comment)]
    if mode == "append":
        expected = [("DATA_MIGRATION_LOADED_FILES", None), *expected]
    assert [(name, None if name != "PEOPLE" else comment) for name, comment in tables] == expected
    swept = metadata(result, f"{LOAD_DB}/{schema}/PEOPLE")["helpers_swept"]
    assert all(entry["run_id"] != "" for entry in swept)
    stages = fake_snowflake.execute(
        f"SELECT name FROM _fs_global._fs_information_schema._fs_stages WHERE schema_name = '{schema}'"
    )
    assert stages == []


def test_an_unload_killed_after_snowflake_wrote_its_files_leaves_no_file_after_the_rerun(
    stage_env: dict, fake_snowflake: Snowflake, tmp_path: Path, s3: Any
):
    """The unload's files are written, the manifest not: the export stays as it was committed,
    and the next run's commit removes the generation no manifest lists."""
    entry = {"table": "LINES", "query": "SELECT * FROM LINEITEM WHERE L_ORDERKEY < 2000", "method": "unload",
             "s3_path": "exports/lines.parquet", "max_file_size_mb": 1}  # fmt: skip
    config = write_config(tmp_path / "e.yaml", [entry])
    defs = build_definitions(config, stage_env)
    assert run(defs, dg.DagsterInstance.ephemeral()).success
    manifest_key = "exports/lines/manifest.json"
    before = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())

    killed_run(fake_snowflake, config, stage_env, r"^COPY INTO '@", "after", tmp_path)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/lines/")["Contents"]}
    generations = {k.split("/")[2] for k in keys if k != manifest_key}
    assert len(generations) == 2  # the committed one, and the killed run's
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read()) == before

    assert run(defs, dg.DagsterInstance.ephemeral()).success
    committed = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/lines/")["Contents"]}
    assert keys == {manifest_key} | {f"exports/lines/{f['path']}" for f in committed["files"]}
