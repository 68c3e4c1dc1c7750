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

Unpartitioned exports run together in one run (`all_exports`); each partitioned export runs in a
run of its own (a job holds one partitions definition) over --partition, --partition-range, or
by default its latest complete partition and `lookback`, as its schedule would. An incremental
export exports the rows past its mark, or with --full-refresh all of them as a new generation.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from dagster import AssetKey, DagsterInstance, DagsterInvariantViolationError
from dotenv import dotenv_values

from data_migration.config import ConfigError, ExportSpec, load_exports
from data_migration.console import RunConsole, print_summary
from data_migration.definitions import definitions_for
from data_migration.exports.assets import FULL_REFRESH
from data_migration.exports.checks import FULL_READ_BACK
from data_migration.resources import SettingsError, config_path, ui_url
from data_migration.schedules import (
    ALL_EXPORTS_JOB,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    latest_keys,
    partition_job_name,
)

# Dagster's own event log goes to stderr only with --verbose; the run still records all of it.
_QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


_RUN_EPILOG = """\
Settings come from the environment and from a .env file in the current directory, whose values
override the environment's (docs/settings.md). With no Snowflake and S3 settings, the embedded
default runs: a local Snowflake emulator with TPC-H data, and a folder standing in for the bucket.
Without DAGSTER_HOME the run's history is not kept (a temporary Dagster instance).

exit codes:
  0    every export, load and blocking check succeeded
  1    an export, a load or a blocking check failed (the summary names it)
  2    the export list or the settings are invalid, or the arguments are: nothing ran
  130  interrupted (Ctrl-C)
"""


def parser() -> argparse.ArgumentParser:
    """The command line, also rendered into docs/cli.md."""
    top = argparse.ArgumentParser(prog="data-migration", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="materialize every export and print a summary",
        description="Materialize every export of the list (or --select), with its checks, and print a line per export.",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    which = run.add_mutually_exclusive_group()
    which.add_argument(
        "--partition", metavar="KEY", help="partitioned exports: this partition (default: the latest complete one)"
    )
    which.add_argument(
        "--partition-range",
        metavar="START...END",
        help="partitioned exports: every partition from START to END, both included, in one run",
    )
    run.add_argument(
        "--full-refresh",
        nargs="+",
        metavar="EXPORT",
        default=[],
        help="incremental exports: export every row again as a new generation, replacing the parts and "
        "the mark (instead of only the rows past the mark)",
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    command_line = parser()
    args = command_line.parse_args(argv)
    partitions = None
    if args.partition:
        partitions = (args.partition, args.partition)
    elif args.partition_range:
        start, separator, end = args.partition_range.partition("...")
        if not separator or not start or not end:
            command_line.error(f"--partition-range {args.partition_range!r}: write it as START...END")  # exits 2
        partitions = (start, end)
    return _run(args.select, args.config, args.verbose, args.verify == "full", partitions, args.full_refresh)


def _run(
    select: list[str] | None,
    config: str | None,
    verbose: bool,
    full_read_back: bool = False,
    partitions: tuple[str, str] | None = None,
    full_refresh: Sequence[str] = (),
) -> int:
    # As Dagster's own CLI does (with the same library): a .env file in the working directory sets
    # variables; a name without a value is skipped.
    found = dotenv_values(os.path.join(os.getcwd(), ".env"))
    os.environ.update({name: value for name, value in found.items() if value is not None})
    if config:
        os.environ["DATA_MIGRATION_CONFIG"] = config
    try:
        exports = load_exports(config_path(os.environ))
        defs = definitions_for(exports, os.environ)
    except (ConfigError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # The list's exports and loads (not the source tables they read, which are observed, not run).
    listed = [AssetKey(list(spec.asset_key_path)) for spec in (*exports.exports, *exports.loads)]
    keys = sorted(listed, key=lambda k: k.to_user_string())
    if select:
        wanted = [AssetKey.from_user_string(s) for s in select]
        unknown = [k.to_user_string() for k in wanted if k not in keys]
        if unknown:
            names = ", ".join(k.to_user_string() for k in keys)
            what, listed = ("export or load", "exports and loads") if exports.loads else ("export", "exports")
            print(f"error: no {what} named {', '.join(unknown)} ({listed}: {names})", file=sys.stderr)
            return 2
        keys = wanted
    specs = {AssetKey(list(spec.asset_key_path)): spec for spec in exports.exports}
    refreshed = [AssetKey.from_user_string(name) for name in full_refresh]
    for key in refreshed:
        if key not in keys:
            known = key in specs
            why = "is not selected" if known else "is not an export"
            print(f"error: --full-refresh {key.to_user_string()}: {why}", file=sys.stderr)
            return 2
        if specs[key].incremental is None:
            print(
                f"error: --full-refresh {key.to_user_string()}: not an incremental export (it has no `incremental:`); "
                "every run of it already exports all its rows",
                file=sys.stderr,
            )
            return 2
    # One run for the unpartitioned exports, then one per partitioned export (a job holds one
    # partitions definition), each over its partitions.
    runs: list[tuple[str, list[AssetKey], dict[str, str]]] = []
    plain = [key for key in keys if key not in specs or specs[key].partition is None]  # loads too
    if plain:
        runs.append((ALL_EXPORTS_JOB, plain, {}))
    for key in keys:
        spec = specs.get(key)
        if spec is None or spec.partition is None:
            continue
        try:
            runs.append((partition_job_name(spec), [key], _partition_tags(spec, partitions)))
        except ValueError as error:
            print(f"error: {key.to_user_string()}: {error}", file=sys.stderr)
            return 2
    if partitions and not any(key in specs and specs[key].partition for key in keys):
        print(
            "error: --partition and --partition-range apply to partitioned exports; none is selected", file=sys.stderr
        )
        return 2

    home = os.environ.get("DAGSTER_HOME")
    try:
        instance = DagsterInstance.get() if home else DagsterInstance.ephemeral()
    except DagsterInvariantViolationError as error:  # e.g. DAGSTER_HOME is not a folder
        print(f"error: {error}", file=sys.stderr)
        return 2
    done, failed_runs, run_ids = 0, [], []
    for job_name, run_keys, tags in runs:
        run_id = str(uuid.uuid4())
        run_ids.append(run_id)
        console = RunConsole(run_keys, out=sys.stdout, live=sys.stdout.isatty())
        instance.add_event_listener(run_id, console.on_event)
        what = f" (partitions {_span(tags)})" if tags else ""
        print(f"Running {_counted(run_keys, specs)} with their checks{what} (run {run_id})", flush=True)
        try:
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance,
                asset_selection=run_keys,
                raise_on_error=False,
                run_id=run_id,
                run_config=_run_config(run_keys, verbose, full_read_back, refreshed),
                tags=tags,
            )
        except KeyboardInterrupt:
            print(f"\ninterrupted: run {run_id} stopped", file=sys.stderr)
            return 130
        done += print_summary(result, run_keys, console, sys.stdout)
        if not result.success:
            failed_runs.append(run_id)
        if len(runs) > 1:
            print()
    runs_text = f"run {run_ids[0]}" if len(run_ids) == 1 else f"runs {', '.join(run_ids)}"
    counted = "exports and loads" if any(key not in specs for key in keys) else "exports"
    print(f"\n{done} of {len(keys)} {counted} succeeded ({runs_text}).")
    for run_id in failed_runs:
        print(_where_the_log_is(run_id, home, verbose))
    return 1 if failed_runs else 0


def _counted(keys: Sequence[AssetKey], exports: Mapping[AssetKey, ExportSpec]) -> str:
    loads = sum(key not in exports for key in keys)
    counted = f"{len(keys) - loads} export(s)"
    return counted + (f" and {loads} load(s)" if loads else "")


def _partition_tags(spec: ExportSpec, partitions: tuple[str, str] | None) -> dict[str, str]:
    """The run's partition tags: the partitions asked for, or what the schedule would export now."""
    assert spec.partition is not None
    definition = spec.partition.definition()
    if partitions is None:
        keys = latest_keys(spec, datetime.now(UTC))
        if not keys:
            raise ValueError("no complete partition yet")
        start, end = keys[0], keys[-1]
    else:
        start, end = partitions
        for key in (start, end):
            if not definition.has_partition_key(key):
                example = definition.get_first_partition_key()
                raise ValueError(
                    f"{key!r} is not one of its {spec.partition.granularity} partitions (keys like {example!r})"
                )
    return {PARTITION_RANGE_START_TAG: start, PARTITION_RANGE_END_TAG: end}


def _span(tags: dict[str, str]) -> str:
    start, end = tags[PARTITION_RANGE_START_TAG], tags[PARTITION_RANGE_END_TAG]
    return start if start == end else f"{start} … {end}"


def _run_config(keys: list[AssetKey], verbose: bool, full_read_back: bool, refreshed: Sequence[AssetKey] = ()) -> dict:
    config: dict = {} if verbose else dict(_QUIET_LOGGERS)
    ops: dict = {}
    if full_read_back:
        ops.update({f"{key.to_python_identifier()}_checks": {"config": {FULL_READ_BACK: True}} for key in keys})
    # An asset's op is named after its key (ORDERS, or DB__SCHEMA__TABLE).
    ops.update({key.to_python_identifier(): {"config": {FULL_REFRESH: True}} for key in refreshed if key in keys})
    if ops:
        config["ops"] = ops
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
