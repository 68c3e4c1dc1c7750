"""Definitions: the exports in the YAML as assets, the resources for this environment, jobs,
schedules, and the run failure alert.

Nothing happens at import: `defs` is a `@dagster.definitions` function, which Dagster's loaders
(`dagster dev`, `dagster definitions validate`, `dagster asset materialize -m data_migration`,
`dg`) call when they load the code location. Tests and the CLI call `build_definitions` with an
explicit path and environment instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import Definitions, definitions

from data_migration.alerts import build_failure_sensor
from data_migration.config import ExportsConfig, load_exports
from data_migration.exports.assets import build_export_assets
from data_migration.exports.checks import build_export_checks
from data_migration.exports.sources import build_source_assets
from data_migration.loads.assets import build_load_assets
from data_migration.resources import SettingsError, config_path, deployment_from_env, ui_url
from data_migration.schedules import all_exports_job, automation_sensors, build_schedules


def build_definitions(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Definitions:
    """Everything Dagster loads. Raises ConfigError / SettingsError before any network call."""
    return definitions_for(load_exports(path or config_path(env)), env)


def definitions_for(config: ExportsConfig, env: Mapping[str, str] = os.environ) -> Definitions:
    """The definitions of an export list already loaded. Raises SettingsError."""
    deployment = deployment_from_env(env)
    if deployment.resources["snowflake"].export_stage is None:
        unloading = [spec.label for spec in config.exports if spec.method == "unload"]
        if unloading:
            raise SettingsError(
                f"{config.path}: {', '.join(unloading)} use method: unload, which needs SNOWFLAKE_EXPORT_STAGE: "
                "a named external stage over the bucket (see the README's method: unload)"
            )
    jobs, schedules = build_schedules(config)
    return Definitions(
        assets=[
            *build_source_assets(config.exports, config.loads),
            *build_export_assets(config.exports, deployment.destination_kind, deployment.retry_policy, config.loads),
            *build_load_assets(config.loads, deployment.retry_policy),
        ],
        asset_checks=[build_export_checks(spec) for spec in config.exports],
        jobs=[job for job in (all_exports_job(config), *jobs) if job is not None],
        schedules=schedules,
        sensors=[build_failure_sensor(ui_url(env)), *automation_sensors(config)],
        resources=deployment.resources,
        # In-process by default: exports are I/O bound and share one emulator per run, and one
        # process pays the imports once. DATA_MIGRATION_EXECUTOR=multiprocess runs several at
        # once. Either way a failed export does not stop the others.
        executor=deployment.executor,
    )


@definitions
def defs() -> Definitions:
    """The code location, built from the environment when a Dagster tool loads it."""
    return build_definitions()
