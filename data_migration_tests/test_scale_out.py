"""Running many exports at once: the executor chosen per deployment, and the `snowflake_exports`
pool that caps the exports running across runs.

The pool is observed the way a deployment would see it: the real `dagster job execute` in a
subprocess with a multiprocess executor, a `DAGSTER_HOME` whose pool limit is set with `dagster
instance concurrency set`, and the order of the steps' start and end events in its event log
(never durations).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from data_migration.conventions import POOL
from data_migration.definitions import build_definitions
from data_migration.local import emulator
from data_migration.resources import SettingsError, deployment_from_env
from data_migration_tests.support import EXAMPLE_CONFIG, environment_without_settings, write_config

BIN = Path(sys.executable).parent
EXPORTS = ("CUSTOMER", "ORDERS", "ORDER_SUMMARY", "RECENT_ORDERS")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DATA_MIGRATION_EXECUTOR": "threads"}, "DATA_MIGRATION_EXECUTOR='threads' must be one of in_process, multi"),
        ({"DATA_MIGRATION_MAX_CONCURRENT": "4"}, "DATA_MIGRATION_MAX_CONCURRENT applies to DATA_MIGRATION_EXECUTOR"),
        (
            {"DATA_MIGRATION_EXECUTOR": "multiprocess", "DATA_MIGRATION_MAX_CONCURRENT": "0"},
            "DATA_MIGRATION_MAX_CONCURRENT='0' must be greater than 0",
        ),
        (
            {"DATA_MIGRATION_EXECUTOR": "multiprocess", "DATA_MIGRATION_MAX_CONCURRENT": "many"},
            "DATA_MIGRATION_MAX_CONCURRENT='many' must be a whole number",
        ),
    ],
)
def test_bad_executor_settings_are_settings_errors(tmp_path: Path, env: dict[str, str], message: str):
    with pytest.raises(SettingsError, match=message):
        deployment_from_env({"DATA_MIGRATION_LOCAL_DIR": str(tmp_path), **env})


def test_the_executor_is_chosen_per_deployment(tmp_path: Path):
    local = {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}
    assert deployment_from_env(local).executor.name == "in_process"
    chosen = deployment_from_env({**local, "DATA_MIGRATION_EXECUTOR": "multiprocess"}).executor
    assert chosen.name == "multiprocess"
    limited = deployment_from_env(
        {**local, "DATA_MIGRATION_EXECUTOR": "multiprocess", "DATA_MIGRATION_MAX_CONCURRENT": "3"}
    ).executor
    assert limited.name == "multiprocess"
    assert limited.config_schema.resolve_config({}).value["config"]["max_concurrent"] == 3
    defs = build_definitions(EXAMPLE_CONFIG, {**local, "DATA_MIGRATION_EXECUTOR": "multiprocess"})
    assert defs.resolve_job_def("all_exports").executor_def.name == "multiprocess"


def test_every_export_and_every_check_that_queries_snowflake_is_in_the_pool(tmp_path: Path):
    entries = [
        {"table": "ORDERS", "s3_path": "o.parquet"},
        {"table": "EVENTS", "s3_path": "e.parquet", "incremental": {"cursor": "ID"}},
    ]
    defs = build_definitions(write_config(tmp_path / "e.yaml", entries), {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)})
    job = defs.resolve_implicit_global_asset_job_def()
    # As Dagster's run plan reads a step's pool (dagster/_core/execution/plan/active.py): the op's
    # pool, or its concurrency key tag (the only form an observable source asset takes).
    pools = {
        node.name: node.definition.pool or node.definition.tags.get("dagster/concurrency_key")
        for node in job.graph.node_dict.values()
    }
    assert pools == {
        "ORDERS": POOL,
        "EVENTS": POOL,
        "ORDERS_checks": None,
        "EVENTS_checks": POOL,
        # Observing a table queries Snowflake too (source assets by the tables' full names).
        f"snowflake__{emulator.DATABASE}__{emulator.SCHEMA}__ORDERS": POOL,
        f"snowflake__{emulator.DATABASE}__{emulator.SCHEMA}__EVENTS": POOL,
    }


def step_overlap(home: Path, run_id: str) -> int:
    """The largest number of export steps (not checks) running at once, from the event log's order."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_records_for_run(run_id).records
    running, most = set(), 0
    for record in sorted(records, key=lambda r: r.storage_id):
        event = record.event_log_entry
        if event.step_key not in EXPORTS or event.dagster_event is None:
            continue
        kind = event.dagster_event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            running.add(event.step_key)
            most = max(most, len(running))
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            running.discard(event.step_key)
    return most


@pytest.mark.parametrize("limit, overlapping", [(1, False), (3, True)])
def test_the_pool_limit_caps_exports_running_at_once_in_a_multiprocess_run(
    production_env: dict, s3: Any, tmp_path: Path, limit: int, overlapping: bool
):
    home = tmp_path / "home"
    home.mkdir()
    env = environment_without_settings(
        **{k: v for k, v in production_env.items() if k != "DAGSTER_HOME"},
        DAGSTER_HOME=str(home),
        DATA_MIGRATION_EXECUTOR="multiprocess",
        DATA_MIGRATION_MAX_CONCURRENT="4",
        DATA_MIGRATION_CONFIG=str(EXAMPLE_CONFIG),
    )

    def dagster(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "dagster"), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    dagster("instance", "concurrency", "set", POOL, str(limit))
    dagster("job", "execute", "-m", "data_migration", "-j", "all_exports")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == limit
    most = step_overlap(home, run.run_id)
    if overlapping:
        assert 2 <= most <= limit  # several exports at once, never more than the pool allows
    else:
        assert most == 1  # one export after another: the next starts only once the last ended
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="data-migration-test")["Contents"]}
    assert len(keys) == len(EXPORTS)


def test_a_bad_executor_setting_exits_2_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    from data_migration import cli

    for name in ("DAGSTER_HOME", "SNOWFLAKE_ACCOUNT", "S3_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_MIGRATION_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("DATA_MIGRATION_EXECUTOR", "threads")
    monkeypatch.setenv("DATA_MIGRATION_CONFIG", str(EXAMPLE_CONFIG))  # restored after the test; cli sets it too
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--config", str(EXAMPLE_CONFIG)]) == 2
    assert capsys.readouterr().err.startswith("error: DATA_MIGRATION_EXECUTOR='threads' must be one of")
    assert not (tmp_path / "local").exists()  # nothing started


def test_an_export_waits_while_another_run_holds_the_pools_only_slot(production_env: dict, s3: Any, tmp_path: Path):
    """Across runs, deterministically: the test holds the pool's one slot as if another run's
    export were querying, starts `data-migration run`, sees its export blocked (and nothing
    written), frees the slot, and the export then runs."""
    import time

    home = tmp_path / "home"
    home.mkdir()
    env = environment_without_settings(
        **{k: v for k, v in production_env.items() if k != "DAGSTER_HOME"}, DAGSTER_HOME=str(home)
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        assert storage.claim_concurrency_slot(POOL, "another-run", "ORDERS").is_claimed
        process = subprocess.Popen(
            [str(BIN / "data-migration"), "run", "--config", str(EXAMPLE_CONFIG), "--select", "ORDERS"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            blocked: list[str] = []
            while not blocked:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the export was never blocked by the pool"
                for run in instance.get_runs():
                    messages = [e.user_message for e in instance.all_logs(run.run_id) if e.step_key == "ORDERS"]
                    blocked = [m for m in messages if m.startswith(f"Step blocked by limit for pool {POOL}")]
                time.sleep(0.2)
            (run,) = instance.get_runs()
            started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            assert [e.step_key for e in started] == []  # waiting for the slot, not exporting
            assert s3.list_objects_v2(Bucket="data-migration-test").get("KeyCount") == 0
            storage.free_concurrency_slot_for_step("another-run", "ORDERS")
            out, err = process.communicate(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, out[-2000:] + err[-2000:]
        assert "✓ ORDERS" in out
        started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        assert "ORDERS" in [e.step_key for e in started]
    assert s3.list_objects_v2(Bucket="data-migration-test")["KeyCount"] == 1
