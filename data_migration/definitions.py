"""Definitions: the exports in the YAML as assets, the resources for this environment, jobs,
schedules, and the run failure alert; with the lists of `data_migration/lists/` (ExportsComponent
instances, components.py) in the same code location.

Nothing happens at import: `defs` is a `@dagster.definitions` function, which Dagster's loaders
(`dagster dev`, `dagster definitions validate`, `dagster asset materialize -m data_migration`,
`dg`) call when they load the code location. Tests and the CLI call `build_definitions` with an
explicit path and environment instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Definitions,
    SourceAsset,
    definitions,
    load_from_defs_folder,
)

from data_migration.alerts import AlertSettingsError, alert_senders
from data_migration.config import ConfigError, ExportsConfig, load_exports
from data_migration.config.fields import TABLE_FILE_TYPES
from data_migration.config.names import Home
from data_migration.config.paths import Output, overlap_problems
from data_migration.config.settings import Settings
from data_migration.exports.assets import build_export_assets
from data_migration.exports.checks import build_export_checks
from data_migration.exports.sources import build_source_assets, source_asset, source_key
from data_migration.exports.table_checks import build_table_checks
from data_migration.loads.assets import build_load_assets
from data_migration.resources import SettingsError, config_path, deployment_from_env, ui_url
from data_migration.schedules import all_exports_job, automation_sensors, build_schedules

# `dg scaffold defs …` writes component lists here ([tool.dg.project] defs_module).
DEFS_FOLDER = Path(__file__).resolve().parent / "lists"


def build_definitions(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Definitions:
    """Everything Dagster loads. Raises ConfigError / SettingsError before any network call."""
    return definitions_for(load_exports(path or config_path(env)), env)


def list_definitions(config: ExportsConfig, env: Mapping[str, str] = os.environ, prefix: str = "") -> Definitions:
    """One list's assets, checks, jobs and schedules (job and schedule names after `prefix`),
    without the resources, executor and sensors a code location defines once. Raises SettingsError."""
    deployment = deployment_from_env(env)
    if deployment.resources["snowflake"].export_stage is None:
        unloading = [spec.label for spec in config.exports if spec.method == "unload"]
        if unloading:
            raise SettingsError(
                f"{config.path}: {', '.join(unloading)} use method: unload, which needs SNOWFLAKE_EXPORT_STAGE: "
                "a named external stage over the bucket (see the README's method: unload)"
            )
    jobs, schedules = build_schedules(config, prefix)
    # Where unqualified names resolve: the exports' session, and the loads' (SNOWFLAKE_LOAD_DATABASE
    # and SNOWFLAKE_LOAD_SCHEMA, by default the same).
    home = Home.of(deployment.resources["snowflake"])
    load_home = Home.of(deployment.resources["snowflake_load"])
    return Definitions(
        assets=[
            *build_source_assets(config.exports, config.loads, home, load_home),
            *build_export_assets(
                config.exports, deployment.destination_kind, deployment.retry_policy, config.loads, home, load_home
            ),
            *build_load_assets(config.loads, deployment.retry_policy, load_home),
        ],
        asset_checks=[
            build_table_checks(spec) if spec.is_table else build_export_checks(spec) for spec in config.exports
        ],
        jobs=[job for job in (all_exports_job(config, prefix), *jobs) if job is not None],
        schedules=schedules,
    )


def definitions_for(config: ExportsConfig, env: Mapping[str, str] = os.environ, *more: Definitions) -> Definitions:
    """The code location: the list (and the component lists in `more`), with the resources, the
    executor and the sensors defined once. Raises ConfigError / SettingsError."""
    deployment = deployment_from_env(env)
    try:  # the run failure alert's log line, and the email and webhook senders the settings ask for
        senders = alert_senders(ui_url(env), Settings(env))
    except AlertSettingsError as error:
        raise SettingsError(str(error)) from None
    lists = combined([list_definitions(config, env), *more])
    automated = any(
        spec.automation_condition is not None
        for item in lists.assets or []
        for spec in ([item] if isinstance(item, SourceAsset) else item.specs)
    )
    return Definitions.merge(
        lists,
        Definitions(
            sensors=[*senders, *automation_sensors(automated)],
            resources=deployment.resources,
            # In-process by default: exports are I/O bound and share one emulator per run, and one
            # process pays the imports once. DATA_MIGRATION_EXECUTOR=multiprocess runs several at
            # once. Either way a failed export does not stop the others.
            executor=deployment.executor,
        ),
    )


def combined(parts: Sequence[Definitions]) -> Definitions:
    """Several lists in one code location. A table two lists read is one source asset (observed
    on every cron either list asks for), and a table one list loads and another reads is that
    load's asset, upstream of the exports reading it (names as Snowflake resolves them); an asset
    two lists define, two exports whose outputs can overlap in the bucket (config/paths.py), or
    two loads into one table (each load's sweep would drop the other's helper tables mid-run), is
    an error naming both."""
    assets: list[Any] = []
    where: dict[AssetKey, str] = {}
    targets: dict[Any, str] = {}  # a load's target, as Snowflake resolves it -> where it is defined
    loaded: dict[AssetKey, AssetKey] = {}  # a loaded table's source key -> its load's asset
    outputs: list[Output] = []
    sources: dict[AssetKey, list[tuple[Any, Mapping[str, Any]]]] = {}
    problems: list[str] = []
    for part in parts:
        for item in part.assets or []:
            # A component's source assets arrive as SourceAssets, the list's own as AssetsDefinitions;
            # either carries the metadata source_asset() gives it, whatever post_processing changed.
            specs = [item] if isinstance(item, SourceAsset) else list(item.specs)
            if len(specs) == 1 and "observed_on" in specs[0].metadata:
                sources.setdefault(specs[0].key, []).append((item, specs[0].metadata))
                continue
            for spec in specs:
                found = _defined_in(spec.metadata)
                if spec.key in where:
                    problems.append(f"{spec.key.to_user_string()} is defined by {where[spec.key]} and by {found}")
                where.setdefault(spec.key, found)
                outputs.extend(_output(spec, found))
                target = _unwrapped(spec.metadata.get("target"))
                parts_of = tuple(_value(spec.metadata.get("table_parts")))
                same = parts_of or target  # the resolved name, or as written where none is recorded
                if isinstance(target, str) and same in targets and targets[same] != found:
                    problems.append(
                        f"{found} ({spec.key.to_user_string()}).table: loads {target}, as {targets[same]} does; "
                        "load a table from one list only"
                    )
                if isinstance(target, str):
                    targets.setdefault(same, f"{found} ({spec.key.to_user_string()})")
                if parts_of:
                    loaded.setdefault(source_key(parts_of), spec.key)
            assets.append(item)
    problems.extend(overlap_problems(outputs))
    problems.extend(_duplicate_names(parts))
    if problems:
        raise ConfigError("the export lists", problems)
    # A table another list loads: its readers depend on that load, and it is no source of its own.
    relinked = {key: loaded[key] for key in sources if key in loaded}
    if relinked:
        assets = [
            item.with_attributes(asset_key_replacements=relinked)
            if isinstance(item, AssetsDefinition) and relinked.keys() & set(item.dependency_keys)
            else item
            for item in assets
        ]
    for key, same in sources.items():
        if key in relinked:
            continue
        if len(same) == 1:
            assets.append(same[0][0])
            continue
        readers = [reader for _, entry in same for reader in _value(entry.get("read_by"))]
        crons = sorted({cron for _, entry in same for cron in _value(entry.get("observed_on"))})
        assets.append(source_asset(tuple(key.path[1:]), list(dict.fromkeys(readers)), crons))
    return Definitions(
        assets=assets,
        asset_checks=[check for part in parts for check in part.asset_checks or []],
        jobs=[job for part in parts for job in part.jobs or []],
        schedules=[schedule for part in parts for schedule in part.schedules or []],
        metadata={name: value for part in parts for name, value in (part.metadata or {}).items()},
    )


def _duplicate_names(parts: Sequence[Definitions]) -> list[str]:
    """A job or schedule name that two parts of the code location define (a list's and a job of
    the user's own in the defs folder, say), each named by its description, before Dagster's own
    duplicate-name error, which says neither."""
    problems = []
    for kind, items in (
        ("job", [job for part in parts for job in part.jobs or []]),
        ("schedule", [schedule for part in parts for schedule in part.schedules or []]),
    ):
        seen: dict[str, str] = {}
        for item in items:
            described = f'"{getattr(item, "description", None) or "no description"}"'
            if item.name in seen:
                problems.append(
                    f"the {kind} name {item.name} is taken twice: by {seen[item.name]} and by {described}; "
                    f"rename one (a list's names come from its folder and its cron strings)"
                )
            seen.setdefault(item.name, described)
    return problems


def _output(spec: AssetSpec, found: str) -> list[Output]:
    """An export asset as the overlap check sees it, from what the IO manager writes by: its
    metadata's s3_path and split, and its partitions' key format. Nothing for other assets."""
    path = _unwrapped(spec.metadata.get("s3_path"))
    if not isinstance(path, str):
        return []
    key_format = getattr(spec.partitions_def, "fmt", None)
    # A table (file_type iceberg or delta) owns its folder, as a split export does.
    split = (
        bool(_unwrapped(spec.metadata.get("split"))) or _unwrapped(spec.metadata.get("file_type")) in TABLE_FILE_TYPES
    )
    return [Output(f"{found} ({spec.key.to_user_string()})", path, split, key_format)]


def _defined_in(metadata: Mapping[str, Any]) -> str:
    references = getattr(metadata.get("dagster/code_references"), "code_references", None) or []
    return next(
        (f"{ref.file_path}:{ref.line_number}" if ref.line_number else ref.file_path for ref in references),
        "an unnamed list",
    )


def _unwrapped(entry: Any) -> Any:
    """A metadata value as given (a component's post_processing may hand back a MetadataValue)."""
    return getattr(entry, "value", entry)


def _value(entry: Any) -> Any:
    return _unwrapped(entry) or []


@definitions
def defs() -> Definitions:
    """The code location, built from the environment when a Dagster tool loads it: the default
    list, and the lists of `data_migration/lists/` (ExportsComponent instances)."""
    env = os.environ
    config = load_exports(config_path(env))
    if not any(DEFS_FOLDER.rglob("defs.yaml")):
        return definitions_for(config, env)
    return definitions_for(config, env, load_from_defs_folder(path_within_project=DEFS_FOLDER))
