"""Asset jobs and schedules from the `schedule:` cron strings in the export list.

Unpartitioned exports: `all_exports` runs them all; exports that share a cron string share a job
and a schedule. A partitioned export has a job of its own (a job holds one partitions
definition), and its schedule asks for the latest complete partition, plus `lookback` partitions
before it as one range (one run), when the cron fires.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from data_migration.config import ExportsConfig, ExportSpec
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


# Dagster's tags for a run over a range of partitions (what a single-run backfill sets).
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def all_exports_job(config: ExportsConfig, prefix: str = "") -> UnresolvedAssetJobDefinition | None:
    """Every unpartitioned export, and every load after its export (partitioned exports run per
    partition, in their own jobs)."""
    keys = [AssetKey(list(spec.asset_key_path)) for spec in config.exports if spec.partition is None]
    keys += [AssetKey(list(load.asset_key_path)) for load in config.loads]
    if not keys:
        return None
    return define_asset_job(
        f"{prefix}{ALL_EXPORTS_JOB}",
        selection=AssetSelection.assets(*keys),
        description="Every unpartitioned export in the export list"
        + (", and every load after its export." if config.loads else "."),
    )


def partition_job_name(spec: ExportSpec) -> str:
    return f"{AssetKey(list(spec.asset_key_path)).to_python_identifier()}_partitions"


def partition_jobs(config: ExportsConfig) -> dict[str, UnresolvedAssetJobDefinition]:
    """One job per partitioned export, by name."""
    return {
        partition_job_name(spec): define_asset_job(
            partition_job_name(spec),
            selection=AssetSelection.assets(AssetKey(list(spec.asset_key_path))),
            description=f"Partitions of {spec.table} ({spec.partition.granularity}).",
        )
        for spec in config.exports
        if spec.partition is not None
    }


def latest_keys(spec: ExportSpec, now: datetime) -> list[str]:
    """The partitions a scheduled run exports at `now`: the latest complete one and `lookback`
    before it (fewer near the first partition, none before it)."""
    assert spec.partition is not None
    keys = spec.partition.definition().get_partition_keys(current_time=now)
    return keys[-(spec.partition.lookback + 1) :]


def _partition_schedule(spec: ExportSpec, job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    """Fires on the export's own cron string; the partitions come from its partitions definition
    at the scheduled time (Dagster's own schedule builder for partitioned jobs derives the cron
    from the partitions instead, and refuses one given)."""
    assert spec.partition is not None and spec.schedule is not None
    name = f"{partition_job_name(spec)}_schedule"
    description = (
        f"Exports the latest complete partition of {spec.table}"
        + (f" and the {spec.partition.lookback} before it" if spec.partition.lookback else "")
        + f" at `{spec.schedule}` (UTC)."
    )

    @schedule(
        name=name,
        job=job,
        cron_schedule=spec.schedule,
        execution_timezone="UTC",
        description=description,
        default_status=DefaultScheduleStatus.RUNNING,
    )
    def _latest_partitions(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        keys = latest_keys(spec, context.scheduled_execution_time)
        if not keys:
            return SkipReason(f"no complete partition of {spec.table} yet")
        if len(keys) == 1:
            return RunRequest(run_key=keys[0], partition_key=keys[0])
        return RunRequest(
            run_key=f"{keys[0]}...{keys[-1]}",
            tags={PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]},
        )

    return _latest_partitions


# How each of cron's own characters is written in a name, so that two cron strings that differ
# get two names ('0 6 * * 1-5' and '0 6 * * 1,5' once both became 'exports_0_6_x_x_1_5').
_CRON_CHARACTERS = {"*": "x", "-": "to", ",": "and", "/": "every", "?": "any", "#": "nth"}


def schedule_name(cron: str) -> str:
    """A stable, readable name per cron string, one per string whose fields differ:
    '0 6 * * *' -> 'exports_0_6_x_x_x', '0 6 * * 1-5' -> 'exports_0_6_x_x_1to5',
    '*/15 * * * *' -> 'exports_xevery15_x_x_x_x'."""
    if cron in _ALIASES:
        return f"exports_{_ALIASES[cron]}"
    fields = [
        "".join(_CRON_CHARACTERS.get(char, char) if not char.isalnum() else char for char in field)
        for field in cron.split()
    ]
    name = "exports_" + "_".join(fields)
    # Anything else cron allows (none of Dagster's cron strings has more) as its code point.
    return re.sub(r"[^A-Za-z0-9_]", lambda match: f"u{ord(match.group(0)):x}", name)


def build_schedules(
    config: ExportsConfig, prefix: str = ""
) -> tuple[list[UnresolvedAssetJobDefinition], list[ScheduleDefinition]]:
    """One asset job and one schedule per distinct cron string, running the exports on it;
    `prefix` (a component's list: its folder's name) keeps two lists' names apart."""
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[ScheduleDefinition] = []
    for name, job in partition_jobs(config).items():
        jobs.append(job)
        spec = next(spec for spec in config.exports if spec.partition and partition_job_name(spec) == name)
        if spec.schedule:
            schedules.append(_partition_schedule(spec, job))
    for cron, specs in config.schedules().items():
        name = prefix + schedule_name(cron)
        # A load follows its export: on the export's schedule, after it.
        loads = [load for load in config.loads if load.source in specs]
        tables = ", ".join([*(spec.table for spec in specs), *(f"then {load.table}" for load in loads)])
        keys = [AssetKey(list(entry.asset_key_path)) for entry in (*specs, *loads)]
        job = define_asset_job(
            f"{name}_job",
            selection=AssetSelection.assets(*keys),
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


AUTOMATION_SENSOR = "data_migration_automation"


def automation_sensors(automated: bool) -> list[AutomationConditionSensorDefinition]:
    """The sensor that evaluates `automation: on_change` (the exports, and the observations of
    their tables on their crons), on by default like the schedules; none when no asset asks."""
    if not automated:
        return []
    with warnings.catch_warnings():  # include_sources is beta in Dagster 1.13
        warnings.simplefilter("ignore", BetaWarning)
        target = AssetSelection.all(include_sources=True)
    return [
        AutomationConditionSensorDefinition(
            AUTOMATION_SENSOR,
            target=target,
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=60,
        )
    ]
