"""`data-migration run`: materialize every export (or a selection) and print a summary per export.

The same job as `dagster job execute -m data_migration -j all_exports` (exports and their asset
checks), shown as a line when each export starts and ends, its progress while it streams
(console.py), and a readable ending:
    ✓ ORDERS          15000 rows  file:///…/exports/orders/data.parquet
    ✗ ORDER_SUMMARY   export ORDER_SUMMARY to s3://bucket/… failed (StorageError): …
    ✗ LINEITEM        60000 rows  s3://bucket/…
        check failed: row_count_matches_source: 60000 rows in the object, 60175 reported by Snowflake
Dagster's own event log is printed only with --verbose. Exit codes: 0 all succeeded, 1 an export
or a blocking check failed, 2 the export list or the settings are invalid (nothing ran).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence

from dagster import AssetKey, DagsterInstance, DagsterInvariantViolationError
from dotenv import dotenv_values

from data_migration.checks import FULL_READ_BACK
from data_migration.config import ConfigError
from data_migration.console import RunConsole, print_summary
from data_migration.definitions import build_definitions
from data_migration.resources import SettingsError, ui_url
from data_migration.schedules import ALL_EXPORTS_JOB

# Dagster's own event log goes to stderr only with --verbose; the run still records all of it.
_QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data-migration", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize every export and print a summary")
    run.add_argument("--select", nargs="+", metavar="ASSET", help="only these exports (e.g. ORDERS)")
    run.add_argument("--config", help="export list to use instead of config/export_tables.yaml")
    run.add_argument("--verbose", action="store_true", help="also print Dagster's event log (to stderr)")
    run.add_argument(
        "--verify",
        choices=("metadata", "full"),
        default="metadata",
        help="how the checks prove each export: its size, CRC32 and Parquet footer (default), or a "
        "full read-back that downloads and parses every row (exports with `verify: full` always do)",
    )
    args = parser.parse_args(argv)
    return _run(args.select, args.config, args.verbose, args.verify == "full")


def _run(select: list[str] | None, config: str | None, verbose: bool, full_read_back: bool = False) -> int:
    # As Dagster's own CLI does (with the same library): a .env file in the working directory sets
    # variables; a name without a value is skipped.
    found = dotenv_values(os.path.join(os.getcwd(), ".env"))
    os.environ.update({name: value for name, value in found.items() if value is not None})
    if config:
        os.environ["DATA_MIGRATION_CONFIG"] = config
    try:
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

    home = os.environ.get("DAGSTER_HOME")
    try:
        instance = DagsterInstance.get() if home else DagsterInstance.ephemeral()
    except DagsterInvariantViolationError as error:  # e.g. DAGSTER_HOME is not a folder
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_id = str(uuid.uuid4())
    console = RunConsole(keys, out=sys.stdout, live=sys.stdout.isatty())
    instance.add_event_listener(run_id, console.on_event)
    print(f"Running {len(keys)} export(s) with their checks (run {run_id})", flush=True)
    try:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=keys,
            raise_on_error=False,
            run_id=run_id,
            run_config=_run_config(keys, verbose, full_read_back),
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: run {run_id} stopped", file=sys.stderr)
        return 130
    done = print_summary(result, keys, console, sys.stdout)
    print(f"\n{done} of {len(keys)} exports succeeded (run {result.run_id}).")
    if not result.success:
        print(_where_the_log_is(run_id, home, verbose))
    return 0 if result.success else 1


def _run_config(keys: list[AssetKey], verbose: bool, full_read_back: bool) -> dict:
    config: dict = {} if verbose else dict(_QUIET_LOGGERS)
    if full_read_back:
        config["ops"] = {f"{key.to_python_identifier()}_checks": {"config": {FULL_READ_BACK: True}} for key in keys}
    return config


def _where_the_log_is(run_id: str, home: str | None, verbose: bool) -> str:
    if home:
        return (
            f"Full log: run {run_id} in DAGSTER_HOME={home}; with `dagster dev` on that DAGSTER_HOME "
            f"it is at {ui_url()}/runs/{run_id}"
        )
    if verbose:
        return "Full log: above, on stderr (DAGSTER_HOME is not set, so the run was not kept)."
    return "Full log: not kept, since DAGSTER_HOME is not set; set it, or rerun with --verbose to print it."


if __name__ == "__main__":
    sys.exit(main())
