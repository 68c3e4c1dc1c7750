"""Asset jobs and schedules from the `schedule:` cron strings in the export list."""

from __future__ import annotations

import re

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
)

from data_migration.config import ExportsConfig
from data_migration.dagster_private import UnresolvedAssetJobDefinition

ALL_EXPORTS_JOB = "all_exports"
_ALIASES = {
    "@hourly": "hourly",
    "@daily": "daily",
    "@midnight": "daily",
    "@weekly": "weekly",
    "@monthly": "monthly",
    "@yearly": "yearly",
    "@annually": "yearly",
}


def all_exports_job() -> UnresolvedAssetJobDefinition:
    return define_asset_job(
        ALL_EXPORTS_JOB, selection=AssetSelection.all(), description="Every export in the export list."
    )


def schedule_name(cron: str) -> str:
    """A stable, readable name per cron string: '0 6 * * *' -> 'exports_0_6_x_x_x'."""
    if cron in _ALIASES:
        return f"exports_{_ALIASES[cron]}"
    return "exports_" + re.sub(r"[^A-Za-z0-9]+", "_", cron.replace("*", "x")).strip("_")


def build_schedules(
    config: ExportsConfig,
) -> tuple[list[UnresolvedAssetJobDefinition], list[ScheduleDefinition]]:
    """One asset job and one schedule per distinct cron string, running the exports on it."""
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[ScheduleDefinition] = []
    for cron, specs in config.schedules().items():
        name = schedule_name(cron)
        tables = ", ".join(spec.table for spec in specs)
        job = define_asset_job(
            f"{name}_job",
            selection=AssetSelection.assets(*(AssetKey(list(spec.asset_key_path)) for spec in specs)),
            description=f"Exports on the schedule `{cron}` (UTC): {tables}.",
        )
        jobs.append(job)
        schedules.append(
            ScheduleDefinition(
                name=f"{name}_schedule",
                job=job,
                cron_schedule=cron,
                execution_timezone="UTC",
                description=f"Runs {tables} at `{cron}` (UTC).",
                # The YAML asked for this schedule, so it runs once a daemon is up.
                default_status=DefaultScheduleStatus.RUNNING,
            )
        )
    return jobs, schedules
