"""Schedules from the YAML: one asset job and one schedule per distinct cron string."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from data_migration.config import load_exports
from data_migration.config.problems import DAGSTER_NAME
from data_migration.definitions import build_definitions
from data_migration.schedules import ALL_EXPORTS_JOB, build_schedules, schedule_name
from data_migration_tests.support import EXAMPLE_CONFIG, write_config


def embedded_env(tmp_path: Path) -> dict[str, str]:
    return {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}


def test_example_config_ships_one_daily_schedule(tmp_path: Path):
    defs = build_definitions(EXAMPLE_CONFIG, embedded_env(tmp_path))
    schedule = defs.resolve_schedule_def("exports_0_6_x_x_x_schedule")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("exports_0_6_x_x_x_job")
    assert job.asset_layer.executable_asset_keys == {dg.AssetKey("ORDERS"), dg.AssetKey("CUSTOMER")}
    all_job = defs.resolve_job_def(ALL_EXPORTS_JOB)
    assert len(all_job.asset_layer.executable_asset_keys) == 4  # the four exports; the list loads nothing
    # A load follows its export on the export's schedule.
    exports = [{"table": "ORDERS", "s3_path": "o.parquet", "schedule": "0 6 * * *"}]
    loads = [{"table": "ORDERS_RESTORED", "from": "ORDERS", "mode": "replace"}]
    with_load = build_definitions(write_config(tmp_path / "l.yaml", exports, loads), embedded_env(tmp_path))
    assert with_load.resolve_job_def("exports_0_6_x_x_x_job").asset_layer.executable_asset_keys == {
        dg.AssetKey("ORDERS"), dg.AssetKey("ORDERS_RESTORED"),
    }  # fmt: skip


def test_a_tick_requests_a_run_of_the_scheduled_job(tmp_path: Path):
    defs = build_definitions(EXAMPLE_CONFIG, embedded_env(tmp_path))
    schedule = defs.resolve_schedule_def("exports_0_6_x_x_x_schedule")
    # The context is entered and left as well: it enters the instance again, which sets
    # Dagster's process-wide current state storage until it is left.
    with dg.instance_for_test() as instance, dg.build_schedule_context(instance=instance) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert requests is not None and len(requests) == 1


def test_each_distinct_cron_gets_its_own_job(tmp_path: Path):
    config = write_config(
        tmp_path / "e.yaml",
        [
            {"table": "A", "s3_path": "a.parquet", "schedule": "@daily"},
            {"table": "B", "s3_path": "b.parquet", "schedule": "*/15 * * * *"},
            {"table": "C", "s3_path": "c.parquet", "schedule": "@daily"},
            {"table": "D", "s3_path": "d.parquet"},
        ],
    )
    jobs, schedules = build_schedules(load_exports(config))
    assert sorted(s.name for s in schedules) == ["exports_daily_schedule", "exports_xevery15_x_x_x_x_schedule"]
    assert sorted(j.name for j in jobs) == ["exports_daily_job", "exports_xevery15_x_x_x_x_job"]
    defs = build_definitions(config, embedded_env(tmp_path))
    daily = defs.resolve_job_def("exports_daily_job")
    assert daily.asset_layer.executable_asset_keys == {dg.AssetKey("A"), dg.AssetKey("C")}


def test_schedule_names_are_stable():
    assert schedule_name("0 6 * * *") == "exports_0_6_x_x_x"
    assert schedule_name("@weekly") == "exports_weekly"
    assert schedule_name("30 2 * * 1-5") == "exports_30_2_x_x_1to5"


def test_distinct_crons_get_distinct_names_and_one_cron_spelt_twice_one_schedule(tmp_path: Path):
    """'0 6 * * 1-5' and '0 6 * * 1,5' both became exports_0_6_x_x_1_5, and the code location
    failed to load with Dagster's duplicate-name error."""
    crons = ["0 6 * * 1-5", "0 6 * * 1,5", "0 6 * * 1/5", "0 6 * * 1 ", "*/5 * * * *", "5 * * * *", "0 6 * * MON-FRI"]
    names = [schedule_name(" ".join(cron.split())) for cron in crons]
    assert len(set(names)) == len(names), names
    assert names[:2] == ["exports_0_6_x_x_1to5", "exports_0_6_x_x_1and5"]
    assert all(DAGSTER_NAME.match(name) for name in names)
    entries = [
        {"table": "A", "s3_path": "a.parquet", "schedule": "0 6 * * 1-5"},
        {"table": "B", "s3_path": "b.parquet", "schedule": "0 6 * * 1,5"},
        {"table": "C", "s3_path": "c.parquet", "schedule": "0 6  * * 1-5"},  # A's cron, spelt with two spaces
    ]
    defs = build_definitions(write_config(tmp_path / "e.yaml", entries), embedded_env(tmp_path))
    one_to_five = defs.resolve_job_def("exports_0_6_x_x_1to5_job")
    assert one_to_five.asset_layer.executable_asset_keys == {dg.AssetKey("A"), dg.AssetKey("C")}
    assert defs.resolve_job_def("exports_0_6_x_x_1and5_job").asset_layer.executable_asset_keys == {dg.AssetKey("B")}
    assert defs.resolve_schedule_def("exports_0_6_x_x_1to5_schedule").cron_schedule == "0 6 * * 1-5"


def test_an_on_change_export_leaves_the_scheduled_jobs_and_its_cron_observes_its_tables(tmp_path: Path):
    """automation: on_change with a schedule ran the export twice per change: once in the cron's
    job, once when the observation on the same cron found a new data version."""
    entries = [
        {"table": "NATION", "s3_path": "n.parquet", "schedule": "0 6 * * *", "automation": "on_change"},
        {"table": "REGION", "s3_path": "r.parquet", "schedule": "0 6 * * *"},
    ]
    defs = build_definitions(write_config(tmp_path / "e.yaml", entries), embedded_env(tmp_path))
    job = defs.resolve_job_def("exports_0_6_x_x_x_job")
    assert job.asset_layer.executable_asset_keys == {dg.AssetKey("REGION")}
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    nation_source = next(spec for key, spec in specs.items() if key.endswith("/NATION") and key != "NATION")
    assert "0 6 * * *" in nation_source.metadata["observed_on"]
    assert specs["NATION"].automation_condition is not None
