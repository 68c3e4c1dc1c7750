"""`data-migration run`: materialize every export (or a selection) and print a summary per export.

The same job as `dagster job execute -m data_migration -j all_exports` (exports and their asset
checks), with a readable ending:
    ✓ ORDERS          15000 rows  file:///…/exports/orders/data.parquet
    ✗ ORDER_SUMMARY   export ORDER_SUMMARY to s3://bucket/… failed (StorageError): …
    ✗ LINEITEM        60000 rows  s3://bucket/…
        check failed: row_count_matches_source: 60000 rows in the object, 60175 reported by Snowflake
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dagster import AssetKey, DagsterInstance
from dagster._core.secrets.env_file import get_env_var_dict

from data_migration.config import ConfigError
from data_migration.resources import SettingsError
from data_migration.schedules import ALL_EXPORTS_JOB


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data-migration", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize every export and print a summary")
    run.add_argument("--select", nargs="+", metavar="ASSET", help="only these exports (e.g. ORDERS)")
    run.add_argument("--config", help="export list to use instead of config/export_tables.yaml")
    args = parser.parse_args(argv)
    return _run(args.select, args.config)


def _run(select: list[str] | None, config: str | None) -> int:
    # As Dagster's own CLI does: a .env file in the working directory sets variables.
    os.environ.update(get_env_var_dict(os.getcwd()))
    if config:
        os.environ["DATA_MIGRATION_CONFIG"] = config
    try:
        from data_migration.definitions import build_definitions

        defs = build_definitions()
    except (ConfigError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    job = defs.resolve_job_def(ALL_EXPORTS_JOB)
    keys = sorted(defs.resolve_all_asset_keys(), key=lambda k: k.to_user_string())
    if select:
        wanted = [AssetKey.from_user_string(s) for s in select]
        unknown = [k.to_user_string() for k in wanted if k not in keys]
        if unknown:
            names = ", ".join(k.to_user_string() for k in keys)
            print(f"error: no export named {', '.join(unknown)} (exports: {names})", file=sys.stderr)
            return 2
        keys = wanted

    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False)

    outcomes: dict[AssetKey, str] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
        rows = metadata["dagster/row_count"].value
        outcomes[event.asset_key] = f"✓ {{name}}  {rows:>9} rows  {metadata['dagster/uri'].value}"
    failed_checks: dict[AssetKey, list[str]] = {}
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            severity = "warning" if evaluation.severity.value == "WARN" else "check failed"
            failed_checks.setdefault(evaluation.asset_key, []).append(
                f"{severity}: {evaluation.check_name}: {evaluation.description}"
            )
    failures = {e.step_key: e for e in result.get_step_failure_events()}
    width = max(len(k.to_user_string()) for k in keys)
    print()
    for key in keys:
        name = key.to_user_string().ljust(width)
        problems = failed_checks.get(key, [])
        if key in outcomes:
            blocking = any(p.startswith("check failed") for p in problems)
            line = outcomes[key].format(name=name)
            print(("✗" + line[1:]) if blocking else line)
            for problem in problems:
                print(f"    {problem}")
        elif key.to_python_identifier() in failures:
            print(f"✗ {name}  {_failure_message(failures[key.to_python_identifier()])}")
        else:
            print(f"✗ {name}  not run (an earlier failure stopped it)")
    done = sum(
        1 for key in outcomes if not any(p.startswith("check failed") for p in failed_checks.get(key, []))
    )
    print(f"\n{done} of {len(keys)} exports succeeded (run {result.run_id}).")
    return 0 if result.success else 1


def _failure_message(event: object) -> str:
    """The most specific message in the error chain: ours (ExportFailed) when there is one."""
    error = event.event_specific_data.error  # type: ignore[attr-defined]
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    chosen = next((e for e in chain if e.cls_name == "ExportFailed"), chain[-1])
    first_line = chosen.message.strip().splitlines()[0] if chosen.message.strip() else chosen.cls_name
    return first_line if chosen.cls_name == "ExportFailed" else f"{chosen.cls_name}: {first_line}"


if __name__ == "__main__":
    sys.exit(main())
