"""skip_unchanged and the source tables (issue 23): against fakesnow's server through the
emulator (which serves SYSTEM$LAST_CHANGE_COMMIT_TIME as
https://docs.snowflake.com/en/sql-reference/functions/system_last_change_commit_time documents it)
and moto, then on the embedded default through the CLI.

Observe -> unchanged -> skip: a second run sends no query that reads data, writes nothing (the
objects' ETags and the manifest stay), and records the export as unchanged, with its checks
passing; an INSERT makes the next run export the new rows; a load into a table an export reads
counts as a change; a query whose answer moves without DML cannot be skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from data_migration.config import ConfigError, parse_exports
from data_migration.definitions import build_definitions
from data_migration.exports.sources import SOURCE_GROUP, source_key
from data_migration_tests.support import (
    BUCKET,
    LOAD_DB,
    PROJECT_ROOT,
    Snowflake,
    environment_without_settings,
    failure,
    local_folder,
    metadata,
    run,
    write_config,
)


def etags(s3: Any, prefix: str) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


def reads(queries: list[str], table: str) -> list[str]:
    """The statements that read `table`'s rows (not its change token)."""
    return [q for q in queries if table in q and "SYSTEM$LAST_CHANGE_COMMIT_TIME" not in q]


def test_unchanged_exports_are_kept_and_a_change_is_exported(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    a, b = f"{LOAD_DB}.{schema}.A", f"{LOAD_DB}.{schema}.B"
    fake_snowflake.execute(f"CREATE TABLE {a} AS SELECT * FROM (VALUES (1, 'x'), (2, 'y')) AS T(ID, V)")
    fake_snowflake.execute(f"CREATE TABLE {b} AS SELECT * FROM (VALUES (1, 10), (2, 20), (3, 30)) AS T(ID, N)")
    exports = [
        {"table": a, "s3_path": "exports/a.parquet", "skip_unchanged": True},
        {"table": b, "s3_path": "exports/b/data.parquet", "max_rows_per_file": 2, "skip_unchanged": True},
        {
            "table": "JOINED",
            "s3_path": "exports/joined.csv",
            "file_type": "csv",
            "query": f"SELECT A.ID, A.V, B.N FROM {a} A JOIN {b} B ON A.ID = B.ID -- both tables",
            "skip_unchanged": True,
        },
    ]
    defs = build_definitions(write_config(tmp_path / "e.yaml", exports), production_env)
    keys = {"A": f"{LOAD_DB}/{schema}/A", "B": f"{LOAD_DB}/{schema}/B", "JOINED": "JOINED"}
    # The lineage: each table a source asset upstream of the exports that read it.
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert specs[source_key((LOAD_DB, schema, "A"))].group_name == SOURCE_GROUP
    assert {dep.asset_key for dep in specs[dg.AssetKey("JOINED")].deps} == {
        source_key((LOAD_DB, schema, "A")),
        source_key((LOAD_DB, schema, "B")),
    }
    instance = dg.DagsterInstance.ephemeral()

    first = run(defs, instance)
    assert first.success, failure(first)
    for key in keys.values():
        assert metadata(first, key)["unchanged"] is False
    tables = {key: set(metadata(first, key)["source_tokens"]["tables"]) for key in keys.values()}
    assert tables == {
        keys["A"]: {f"{LOAD_DB}.{schema}.A"},
        keys["B"]: {f"{LOAD_DB}.{schema}.B"},
        "JOINED": {f"{LOAD_DB}.{schema}.A", f"{LOAD_DB}.{schema}.B"},
    }
    written = etags(s3, "exports/")
    queries = len(fake_snowflake.recorder.queries)

    second = run(defs, instance)
    assert second.success, failure(second)
    sent = fake_snowflake.recorder.queries[queries:]
    assert not reads(sent, f"{schema}.A") and not reads(sent, f"{schema}.B"), sent
    # One statement reads the tokens of the run's three exports, at the first: the others send nothing.
    (batch,) = [q for q in sent if "SYSTEM$LAST_CHANGE_COMMIT_TIME" in q]
    assert batch.count("SYSTEM$LAST_CHANGE_COMMIT_TIME") == 2, batch
    assert etags(s3, "exports/") == written, "nothing is written again"
    for key in keys.values():
        kept = metadata(second, key)
        assert kept["unchanged"] is True and kept["unchanged_since"].endswith("UTC")
        assert kept["dagster/row_count"] == metadata(first, key)["dagster/row_count"]
        assert kept["dagster/uri"] == metadata(first, key)["dagster/uri"]
    evaluations = second.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]

    fake_snowflake.execute(f"INSERT INTO {a} VALUES (3, 'z')")
    third = run(defs, instance)
    assert third.success, failure(third)
    assert metadata(third, keys["A"])["unchanged"] is False and metadata(third, keys["A"])["dagster/row_count"] == 3
    assert metadata(third, keys["JOINED"])["unchanged"] is False
    assert metadata(third, keys["JOINED"])["dagster/row_count"] == 3
    assert metadata(third, keys["B"])["unchanged"] is True
    assert etags(s3, "exports/b/") == {k: v for k, v in written.items() if k.startswith("exports/b/")}

    # Another code version (the query changed) is never kept, even on the same tokens.
    exports[2]["query"] = f"SELECT A.ID, B.N FROM {a} A JOIN {b} B ON A.ID = B.ID"
    changed = build_definitions(write_config(tmp_path / "e.yaml", exports), production_env)
    fourth = run(changed, instance)
    assert fourth.success, failure(fourth)
    assert metadata(fourth, keys["JOINED"])["unchanged"] is False
    assert metadata(fourth, keys["A"])["unchanged"] is True


def test_a_load_into_a_table_an_export_reads_counts_as_a_change(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    target = f"{LOAD_DB}.{schema}.COPIED"
    exports = [
        # skip_unchanged here too: the run's token batch, read at NATION's step (before the load
        # replaces COPIED), must leave COPIED out, or COPIED_OUT would compare a stale token.
        {"table": "NATION", "s3_path": "exports/nation.parquet", "skip_unchanged": True},
        {"table": "COPIED_OUT", "s3_path": "exports/copied.parquet", "query": f"SELECT * FROM {target}",
         "skip_unchanged": True},
    ]  # fmt: skip
    loads = [{"table": target, "from": "NATION", "mode": "replace"}]
    defs = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), production_env)
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    # The export reads the loaded table: it is downstream of the load, not of a source of its own.
    assert {dep.asset_key for dep in specs[dg.AssetKey("COPIED_OUT")].deps} == {
        dg.AssetKey([LOAD_DB, schema, "COPIED"])
    }
    assert source_key((LOAD_DB, schema, "COPIED")) not in specs
    instance = dg.DagsterInstance.ephemeral()
    first = run(defs, instance)
    assert first.success, failure(first)
    assert metadata(first, "COPIED_OUT")["dagster/row_count"] == 25
    second = run(defs, instance)
    assert second.success, failure(second)
    # The load overwrote the table's rows: the export of it runs again.
    assert metadata(second, "COPIED_OUT")["unchanged"] is False
    assert metadata(second, "NATION")["unchanged"] is True
    third = run(defs, instance, ["COPIED_OUT"])
    assert third.success, failure(third)
    assert metadata(third, "COPIED_OUT")["unchanged"] is True


@pytest.mark.parametrize("spelling", ["COPIED", "copied", "{schema}.COPIED"])
def test_a_load_and_an_export_spelling_one_table_differently_are_linked(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any, spelling: str
):
    """A load into DB.SCHEMA.T and an export of `SELECT * FROM T` in that session's schema are one
    table (an unqualified name resolves in the session's database and schema, as Snowflake says:
    https://docs.snowflake.com/en/sql-reference/name-resolution): the export runs after the load
    and reads its tokens after it, and T has no source asset of its own (issue 34, item 3)."""
    env = {**production_env, "SNOWFLAKE_DATABASE": LOAD_DB.lower(), "SNOWFLAKE_SCHEMA": schema}
    nation = f"{LOAD_DB}.{schema}.NATION_SRC"  # a copy: the test changes its rows
    fake_snowflake.execute(f"CREATE TABLE {nation} AS SELECT * FROM {_nation()}")
    read = spelling.format(schema=schema)
    exports = [
        {"table": nation, "s3_path": "exports/nation.parquet", "skip_unchanged": True},
        {"table": "COPIED_OUT", "s3_path": "exports/copied.parquet", "query": f"SELECT * FROM {read}",
         "skip_unchanged": True},
    ]  # fmt: skip
    loads = [{"table": f"{LOAD_DB}.{schema}.COPIED", "from": nation, "mode": "replace"}]
    defs = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), env)
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert {dep.asset_key for dep in specs[dg.AssetKey("COPIED_OUT")].deps} == {
        dg.AssetKey([LOAD_DB, schema, "COPIED"])
    }
    assert not [key for key in specs if key.path[-1] == "COPIED" and key.path[0] == "snowflake"]
    instance = dg.DagsterInstance.ephemeral()
    first = run(defs, instance)
    assert first.success, failure(first)
    assert metadata(first, "COPIED_OUT")["dagster/row_count"] == 25
    fake_snowflake.execute(f"DELETE FROM {nation} WHERE N_NATIONKEY >= 20")
    second = run(defs, instance)
    assert second.success, failure(second)
    # The load replaced COPIED with 20 rows: the export of it ran again, after the load.
    assert metadata(second, "COPIED_OUT")["unchanged"] is False
    assert metadata(second, "COPIED_OUT")["dagster/row_count"] == 20


def test_a_load_in_one_list_is_upstream_of_an_export_of_its_table_in_another(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """Across lists (components) too: one source asset per table whatever its spelling, and a table
    one list loads is that load's asset in every list that reads it."""
    from data_migration.config import load_exports
    from data_migration.definitions import definitions_for, list_definitions

    env = {**production_env, "SNOWFLAKE_DATABASE": LOAD_DB, "SNOWFLAKE_SCHEMA": schema}
    nation = f"{LOAD_DB}.{schema}.NATION_SRC"
    fake_snowflake.execute(f"CREATE TABLE {nation} AS SELECT * FROM {_nation()}")
    first = [
        {"table": nation, "s3_path": "exports/nation.parquet"},
        {"table": "N1", "s3_path": "exports/n1.parquet", "query": "SELECT * FROM NATION_SRC"},
    ]
    loads = [{"table": f"{LOAD_DB}.{schema}.COPIED", "from": nation, "mode": "replace"}]
    second = [
        {"table": "N2", "s3_path": "exports/n2.parquet", "query": f"SELECT * FROM {schema}.nation_src"},
        {"table": "COPIED_OUT", "s3_path": "exports/copied.parquet", "query": "SELECT * FROM copied",
         "skip_unchanged": True},
    ]  # fmt: skip
    defs = definitions_for(
        load_exports(write_config(tmp_path / "a.yaml", first, loads)),
        env,
        list_definitions(load_exports(write_config(tmp_path / "b.yaml", second)), env, "b_"),
    )
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    sources = [key for key, spec in specs.items() if spec.group_name == SOURCE_GROUP]
    # NATION_SRC read by the export itself (no source: it is the table), N1 and N2: one source.
    assert sources == [source_key((LOAD_DB, schema, "NATION_SRC"))], sources
    assert {dep.asset_key for dep in specs[dg.AssetKey("COPIED_OUT")].deps} == {
        dg.AssetKey([LOAD_DB, schema, "COPIED"])
    }
    # Both lists in one run: the load first, then the other list's export of its table.
    everything = [key for key in specs if key not in sources]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=everything)
    assert result.success, failure(result)
    assert metadata(result, "COPIED_OUT")["dagster/row_count"] == 25
    order = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    assert order.index(f"{LOAD_DB}/{schema}/COPIED") < order.index("COPIED_OUT")


def test_skip_unchanged_on_a_view_that_moves_with_time_fails_and_a_plain_view_is_kept(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    """A view's change token moves with DML on its tables only (SYSTEM$LAST_CHANGE_COMMIT_TIME,
    https://docs.snowflake.com/en/sql-reference/functions/system_last_change_commit_time), so a
    view over CURRENT_DATE() would be kept for ever: its definition, read with the tokens from
    INFORMATION_SCHEMA.VIEWS.VIEW_DEFINITION
    (https://docs.snowflake.com/en/sql-reference/info-schema/views), must pass the test a query's
    does (issue 34, item 4)."""
    base = f"{LOAD_DB}.{schema}"
    fake_snowflake.execute(f"CREATE TABLE {base}.EVENTS AS SELECT * FROM {_nation()}")
    fake_snowflake.execute(
        f"CREATE VIEW {base}.RECENT AS SELECT * FROM {base}.EVENTS "
        "WHERE N_NATIONKEY < CURRENT_DATE() - CURRENT_DATE() + 10"
    )
    fake_snowflake.execute(f"CREATE VIEW {base}.PLAIN AS SELECT N_NAME FROM {base}.EVENTS WHERE N_REGIONKEY = 1")
    exports = [
        {"table": "RECENT_OUT", "s3_path": "exports/recent.parquet", "query": f"SELECT * FROM {base}.RECENT",
         "skip_unchanged": True},
        {"table": "PLAIN_OUT", "s3_path": "exports/plain.parquet", "query": f"SELECT * FROM {base}.PLAIN",
         "skip_unchanged": True},
        {"table": "EVENTS_OUT", "s3_path": "exports/events.parquet", "query": f"SELECT * FROM {base}.EVENTS",
         "skip_unchanged": True},
    ]  # fmt: skip
    defs = build_definitions(write_config(tmp_path / "v.yaml", exports), production_env)
    instance = dg.DagsterInstance.ephemeral()
    for attempt in ("first", "second"):
        result = run(defs, instance)
        assert not result.success
        (failed,) = result.get_step_failure_events()
        assert failed.step_key == "RECENT_OUT"
        message = failure(result)
        assert (
            f"{base}.RECENT is a view, and its rows can change without any change to a table: it calls CURRENT_DATE"
            in message.replace('"', "")
        )
        assert "remove skip_unchanged, or export the tables the view reads" in message
        # The plain view and the table: exported, then kept (both batched with the failing one).
        assert metadata(result, "PLAIN_OUT")["unchanged"] is (attempt == "second")
        assert metadata(result, "EVENTS_OUT")["unchanged"] is (attempt == "second")
        assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/recent").get("Contents")


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("CREATE VIEW S.V AS SELECT A FROM T WHERE (A > 1);", None),
        ("create or replace secure view V (A comment 'x') copy grants as select a from t", None),
        ("CREATE VIEW S.W AS SELECT A, CURRENT_DATE AS D FROM T;", "it calls CURRENT_DATE"),
        ("create view v as with x as (select * from t) select * from x sample (10)", "time or chance"),
        ("create view v as select * from table(generator(rowcount => 3))", "it calls GENERATOR"),
        ("SELECT a FROM t", None),
        ("", "may not see its definition"),
        ("create view v as ((( not sql", "could not be read"),
    ],
)
def test_a_view_definition_passes_the_test_a_query_does(definition: str, expected: str | None):
    from data_migration.exports.unchanged import view_reason

    reason = view_reason(definition)
    assert (reason is None) if expected is None else (reason is not None and expected in reason), reason


def _nation() -> str:
    from data_migration.local import emulator

    return f"{emulator.DATABASE}.{emulator.SCHEMA}.NATION"


def test_a_table_gone_fails_its_own_export_and_the_others_are_still_kept(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path
):
    """The run's token batch fails on a dropped table: each export then reads its own tokens, so
    the failure is the export's that reads the table, and the others are kept."""
    kept, gone = f"{LOAD_DB}.{schema}.KEPT", f"{LOAD_DB}.{schema}.GONE"
    for table in (kept, gone):
        fake_snowflake.execute(f"CREATE TABLE {table} AS SELECT * FROM (VALUES (1, 'x')) AS T(ID, V)")
    exports = [
        {"table": gone, "s3_path": "exports/gone.parquet", "skip_unchanged": True},
        {"table": kept, "s3_path": "exports/kept.parquet", "skip_unchanged": True},
    ]
    defs = build_definitions(write_config(tmp_path / "g.yaml", exports), production_env)
    instance = dg.DagsterInstance.ephemeral()
    first = run(defs, instance)
    assert first.success, failure(first)
    fake_snowflake.execute(f"DROP TABLE {gone}")
    second = run(defs, instance)
    assert not second.success
    assert metadata(second, f"{LOAD_DB}/{schema}/KEPT")["unchanged"] is True
    (failed,) = second.get_step_failure_events()
    assert failed.step_key.endswith("GONE"), failed.step_key
    assert "002003" in failure(second) and "GONE" in failure(second), failure(second)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"query": "SELECT * FROM ORDERS WHERE O_ORDERDATE >= DATEADD(day, -7, CURRENT_DATE())"},
            "exports[0] (ORDERS).skip_unchanged: cannot tell when this query's answer changes: its answer can "
            "change without any change to a table: it calls CURRENT_DATE",
        ),
        ({"query": "SELECT RANDOM() AS R FROM ORDERS"}, "it calls RAND"),
        ({"query": "SELECT SEQ4() AS N FROM ORDERS"}, "it calls SEQ4"),
        ({"query": "SELECT * FROM TABLE(GENERATOR(ROWCOUNT => 3))"}, "it calls GENERATOR"),
        ({"query": "SELECT * FROM @STAGE/x.parquet"}, "query: reads the stage '@STAGE/x.parquet'"),
        ({"query": "SELECT * FROM ORDERS AT(OFFSET => -60)"}, "whose rows change with time or chance"),
        ({"query": "SELECT * FROM INFORMATION_SCHEMA.TABLES"}, "Snowflake's own metadata"),
        (
            {
                "s3_path": "exports/o/{partition}/data.parquet",
                "partition": {"column": "O_ORDERDATE", "granularity": "daily", "start": "2024-01-01"},
            },
            "skip_unchanged: a partitioned export reads the partitions its run asks for",
        ),
        ({"incremental": {"cursor": "O_ORDERKEY"}}, "skip_unchanged: an incremental export already reads only"),
    ],
)
def test_skip_unchanged_where_it_cannot_apply_is_a_config_error(fields: dict, expected: str):
    entry = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "skip_unchanged": True, **fields}
    with pytest.raises(ConfigError) as raised:
        parse_exports({"exports": [entry]}, "list.yaml")
    assert expected in str(raised.value)


def test_the_embedded_default_keeps_an_unchanged_export_through_the_cli(tmp_path: Path, tpch_dir: Path):
    config = write_config(
        tmp_path / "list.yaml",
        [
            {"table": "NATION", "s3_path": "exports/nation/data.parquet", "skip_unchanged": True},
            {
                "table": "REGION",
                "s3_path": "exports/region/data.parquet",
                "max_rows_per_file": 2,
                "skip_unchanged": True,
            },
        ],
    )
    env = {
        **environment_without_settings(),
        "DATA_MIGRATION_LOCAL_DIR": str(local_folder(tmp_path, tpch_dir)),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()
    command = [str(Path(sys.executable).parent / "data-migration"), "run", "--config", str(config)]
    outputs = []
    for _ in range(2):
        done = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    assert "unchanged" not in outputs[0]
    assert "NATION  " in outputs[1] and "unchanged since" in outputs[1], outputs[1]
    # Each export's line as it ends, and its line in the summary.
    assert outputs[1].count("unchanged  (no table changed since") == 2, outputs[1]
    assert outputs[1].count("rows  unchanged since") == 2, outputs[1]
    # Without DAGSTER_HOME the run keeps no history: the split export's manifest still records its
    # tokens and is kept; the single object, whose tokens are in its materialization, is exported.
    del env["DAGSTER_HOME"]
    done = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = [line.split()[1] for line in done.stdout.splitlines() if "rows  unchanged since" in line]
    assert kept == ["REGION"], done.stdout


def observe(defs: dg.Definitions, instance: dg.DagsterInstance, key: dg.AssetKey) -> Any:
    """One observation of a source table, as the automation sensor or the UI's Observe launches it."""
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[key], raise_on_error=False)
    assert result.success, failure(result)
    return instance.fetch_observations(key, limit=1).records[0].asset_observation


def test_observing_a_table_records_its_change_token_and_automation_follows_it(
    production_env: dict, fake_snowflake: Snowflake, schema: str, tmp_path: Path, s3: Any
):
    table = f"{LOAD_DB}.{schema}.EVENTS"
    fake_snowflake.execute(f"CREATE TABLE {table} AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS T(ID, V)")
    exports = [
        {"table": table, "s3_path": "exports/events.parquet", "skip_unchanged": True, "automation": "on_change",
         "schedule": "*/15 * * * *", "freshness": {"fail_after": "26h", "warn_after": "25h"}},
    ]  # fmt: skip
    defs = build_definitions(write_config(tmp_path / "o.yaml", exports), production_env)
    key, source = dg.AssetKey([LOAD_DB, schema, "EVENTS"]), source_key((LOAD_DB, schema, "EVENTS"))
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert specs[key].freshness_policy is not None and specs[key].automation_condition is not None
    assert "*/15 * * * *" in str(specs[source].automation_condition)  # observed on the export's cron
    assert "data_migration_automation" in {sensor.name for sensor in defs.sensors or []}
    instance = dg.DagsterInstance.ephemeral()

    first = observe(defs, instance, source)
    token = fake_snowflake.execute(f"SELECT SYSTEM$LAST_CHANGE_COMMIT_TIME('{table}') AS T")[0][0]
    assert first.data_version == str(token)
    assert first.metadata["dagster/row_count"].value == 2 and first.metadata["last_change"].value.endswith("UTC")
    assert observe(defs, instance, source).data_version == first.data_version, "no change, the same version"

    # Declarative automation: once the export ran, it is requested again only when an observation
    # of its table finds a new data version.
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert run(defs, instance, ["/".join(key.path)]).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(key) == 0
    fake_snowflake.execute(f"INSERT INTO {table} VALUES (3, 'c')")
    assert observe(defs, instance, source).data_version != first.data_version
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(key) == 1


def test_a_table_whose_name_dagster_cannot_take_is_still_a_source_asset(tmp_path: Path):
    """The list says to export such a table with a `query` and a plain `table` name: its source
    asset then needs a key Dagster can name an op after, distinct from every other table's."""
    exports = [
        {"table": "MIXED", "s3_path": "m.parquet", "query": 'SELECT * FROM "Mixed Case" JOIN "Mixed_Case" USING (ID)'}
    ]
    defs = build_definitions(write_config(tmp_path / "m.yaml", exports), {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)})
    deps = {
        dep.asset_key
        for spec in defs.resolve_all_asset_specs()
        if spec.key == dg.AssetKey("MIXED")
        for dep in spec.deps
    }
    plain, spaced = sorted(deps, key=lambda key: key.path[-1])
    assert plain.path[-1] == "Mixed_Case" and spaced.path[-1].startswith("Mixed_Case_") and spaced != plain
    defs.resolve_job_def("all_exports")  # Dagster accepts every op name
