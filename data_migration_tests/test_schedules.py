"""Schedules from the YAML: one asset job and one schedule per distinct cron string."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from data_migration.config import load_exports
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
    assert sorted(s.name for s in schedules) == ["exports_daily_schedule", "exports_x_15_x_x_x_x_schedule"]
    assert sorted(j.name for j in jobs) == ["exports_daily_job", "exports_x_15_x_x_x_x_job"]
    defs = build_definitions(config, embedded_env(tmp_path))
    daily = defs.resolve_job_def("exports_daily_job")
    assert daily.asset_layer.executable_asset_keys == {dg.AssetKey("A"), dg.AssetKey("C")}


def test_schedule_names_are_stable():
    assert schedule_name("0 6 * * *") == "exports_0_6_x_x_x"
    assert schedule_name("@weekly") == "exports_weekly"
    assert schedule_name("30 2 * * 1-5") == "exports_30_2_x_x_1_5"
