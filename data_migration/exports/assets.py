"""The asset factory: a pure function from an ExportSpec to one software-defined asset."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    Field,
    PartitionsDefinition,
    RetryPolicy,
    asset,
)

from data_migration.config import ExportSpec, LoadSpec
from data_migration.config.cursors import CursorError, CursorValue, CursorWindow
from data_migration.config.names import NO_HOME, Home
from data_migration.config.windows import Window, window_sql
from data_migration.conventions import POOL, code_references, one_line
from data_migration.errors import ExportFailed, is_transient
from data_migration.exports.increments import max_sql
from data_migration.exports.io_managers import io_manager_key
from data_migration.exports.runs import FileExport, IncrementalExport, PartitionedExport, TableExport, UnloadExport
from data_migration.exports.sources import loaded_tables, upstream_keys
from data_migration.exports.unchanged import ConditionalExport, RunTokens, tokens_from, tokens_sql, view_problems
from data_migration.snowflake.queries import (
    ExportStream,
    SharedConnection,
    describe_query,
    open_export_stream,
    query_value,
    run_statement,
)
from data_migration.snowflake.resource import SnowflakeExportResource
from data_migration.snowflake.tags import query_tag

GROUP_NAME = "snowflake_exports"
# The run config of an incremental export's asset: {"ops": {"EVENTS": {"config": {"full_refresh": true}}}}
FULL_REFRESH = "full_refresh"


def build_export_asset(
    spec: ExportSpec,
    destination_kind: str = "s3",
    retry_policy: RetryPolicy | None = None,
    deps: Sequence[AssetKey] = (),
    run_tokens: RunTokens | None = None,
) -> AssetsDefinition:
    """One asset for one export: runs the export's SQL and hands the stream to its IO manager.

    `retry_policy` applies to transient failures only: permanent ones raise ExportFailed with
    retries disallowed. `run_tokens` is shared by a list's exports (see build_export_assets).
    """
    run_tokens = run_tokens if run_tokens is not None else RunTokens()

    partitions_def = spec.partition.definition() if spec.partition else None

    # The decorator's arguments are evaluated first, so the BetaWarning of `backfill_policy` (beta
    # in Dagster 1.13, warned on every load of the definitions) is silenced around them only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        decorate = _asset_decorator(spec, destination_kind, retry_policy, partitions_def, deps)

    # `context` is left unannotated: Dagster compares that annotation with its context classes
    # themselves, and this module's annotations are strings (from __future__ import annotations).
    # Returns an ExportStream, or a PartitionedExport for a partitioned export (Dagster types an
    # output from a single class, so the annotation stays Any).
    @decorate
    def _export(context, snowflake: SnowflakeExportResource) -> Any:
        def open_stream(sql: str, what: str, connection: SharedConnection | None = None) -> ExportStream:
            context.log.info(f"Fetching data from Snowflake for {what}: {one_line(sql)}")
            try:
                return open_export_stream(
                    snowflake,
                    sql,
                    timeout_seconds=snowflake.query_timeout_seconds,
                    log=context.log,
                    query_tag=query_tag(spec, context.run.run_id),
                    connection=connection,
                    timestamp_unit=spec.timestamp_unit,
                )
            except Exception as error:
                raise _failed_in_snowflake(what, error) from error

        name = context.asset_key.to_user_string()
        if spec.is_table:  # the config refuses partitions and increments for tables (not yet built)
            return TableExport(spec=spec, stream=open_stream(spec.sql, name))
        return FileExport(spec=spec, run=_file_run(context, snowflake, name, open_stream))

    def _file_run(context: Any, snowflake: SnowflakeExportResource, name: str, open_stream: Any) -> Any:
        """What the file IO manager runs: the stream, or a run of several queries (runs.py)."""
        if spec.skip_unchanged:
            return _conditional(context, spec, snowflake, open_stream, name, run_tokens)
        if spec.method == "unload":
            return _unload(context, spec, snowflake, name)
        if spec.incremental is not None:
            return _incremental(context, spec, snowflake, open_stream, name)
        if spec.partition is None:
            return open_stream(spec.sql, name)
        column = spec.partition.column
        windows = []
        for partition_key in context.partition_keys:
            window = partitions_def.time_window_for_partition_key(partition_key)  # type: ignore[union-attr]
            windows.append(Window(partition_key, _utc(window.start), _utc(window.end)))
        shared = SharedConnection(snowflake)  # one sign-in for the run's partitions
        return PartitionedExport(
            windows=windows,
            open=lambda w: open_stream(window_sql(spec.sql, column, w), f"{name} partition {w.key}", shared),
            record=lambda key, metadata: context.add_asset_metadata(dict(metadata), partition_key=key),
            close=shared.close,
        )

    return _export


def _failed_in_snowflake(what: str, error: Exception) -> ExportFailed:
    """A query or statement of export `what` failed in Snowflake: retried only if transient."""
    return ExportFailed(
        f"export {what} failed in Snowflake ({type(error).__name__}): {error}", transient=is_transient(error)
    )


def _unload(context: Any, spec: ExportSpec, snowflake: SnowflakeExportResource, name: str) -> UnloadExport:
    """The lazy run of an unloaded export, for its IO manager (see source.UnloadExport)."""
    assert snowflake.export_stage is not None  # definitions.py refuses the list without one
    shared = SharedConnection(snowflake)
    timeout = snowflake.query_timeout_seconds

    def describe() -> list[Any]:
        try:
            return describe_query(snowflake, spec.sql, timeout_seconds=timeout, connection=shared)
        except Exception as error:
            raise _failed_in_snowflake(name, error) from error

    def run(sql: str) -> tuple[str | None, list[dict[str, Any]]]:
        context.log.info(f"Unloading {name} in Snowflake: {one_line(sql, 400)}")
        try:
            query_id, output = run_statement(
                snowflake,
                sql,
                timeout_seconds=timeout,
                query_tag=query_tag(spec, context.run.run_id),
                connection=shared,
            )
        except Exception as error:
            raise _failed_in_snowflake(name, error) from error
        context.log.info(
            f"Query {query_id} unloaded {sum(int(row.get('ROW_COUNT') or 0) for row in output)} rows in "
            f"{sum(1 for row in output if row.get('FILE_NAME'))} file(s)"
        )
        return query_id, output

    return UnloadExport(stage=snowflake.export_stage, describe=describe, run=run, close=shared.close)


def _conditional(
    context: Any,
    spec: ExportSpec,
    snowflake: SnowflakeExportResource,
    open_stream: Any,
    name: str,
    run_tokens: RunTokens,
) -> ConditionalExport:
    """skip_unchanged: the tables' change tokens, read before any query (for the whole run at
    its first such export, see RunTokens); the export's usual run, started by its IO manager only
    if a table changed (see exports/unchanged.py)."""
    shared = SharedConnection(snowflake)
    run_id, key = context.run.run_id, context.asset_key
    tokens = run_tokens.cached(run_id, key)
    problems: Mapping[str, str] = run_tokens.problems(run_id) if tokens is not None else {}
    if tokens is None:
        selected = set(context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys)
        graph = context.job_def.asset_layer.asset_graph
        # An export that waits in this run for another asset (a load of its table, in this list or
        # another) reads its tokens at its own step, after that asset: never in the batch.
        waiting = {k for k in selected if graph.has(k) and set(graph.get(k).parent_keys) & selected}
        tables = run_tokens.batch(
            run_id, key, spec.source_tables, selected - waiting, context.job_def.executor_def.name
        )
        try:
            try:
                read, problems = _read_tokens(context, spec, snowflake, shared, tables, name)
            except ExportFailed as error:
                if len(tables) == len(spec.source_tables):
                    raise
                # Another export's table (dropped, say) fails the run's batch: read this one's own.
                context.log.warning(f"Reading the run's change tokens failed ({error}); reading {name}'s own")
                run_tokens.remember(run_id, key, {})
                read, problems = _read_tokens(context, spec, snowflake, shared, spec.source_tables, name)
        except Exception:
            shared.close()
            raise
        run_tokens.remember(run_id, key, read, problems)
        tokens = {".".join(parts): read[".".join(parts)] for parts in spec.source_tables}
    own = [problems[".".join(parts)] for parts in spec.source_tables if ".".join(parts) in problems]
    if own:
        shared.close()
        raise ExportFailed(
            f"export {name}: skip_unchanged cannot tell whether its answer changed: {'; '.join(own)}. A view's "
            "change token moves only with its tables' rows, so the export would be kept while its answer moves: "
            "remove skip_unchanged, or export the tables the view reads",
            transient=False,
        )
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None

    def run() -> Any:
        if spec.method == "unload":
            return _unload(context, spec, snowflake, name)
        return open_stream(spec.sql, name, shared)

    return ConditionalExport(
        tokens=tokens,
        code_version=spec.code_version,
        previous=materialization.metadata if materialization is not None else None,
        run=run,
        close=shared.close,
    )


def _read_tokens(
    context: Any,
    spec: ExportSpec,
    snowflake: SnowflakeExportResource,
    shared: SharedConnection,
    tables: Sequence[Sequence[str]],
    name: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """One statement: the change token of each of `tables`, as {table: token}, and the problems
    of the views among them (exports/unchanged.py)."""
    sql = tokens_sql(tables, views=True)
    whose = f"the tables {name} reads" if len(tables) == len(spec.source_tables) else f"{len(tables)} tables"
    context.log.info(f"Reading the change tokens of {whose}: {one_line(sql, 400)}")
    try:
        _, rows = run_statement(
            snowflake,
            sql,
            timeout_seconds=snowflake.query_timeout_seconds,
            query_tag=query_tag(spec, context.run.run_id),
            connection=shared,
        )
        return tokens_from(rows[0], tables), view_problems(rows[0], tables)
    except Exception as error:
        raise _failed_in_snowflake(name, error) from error


def _incremental(
    context: Any, spec: ExportSpec, snowflake: SnowflakeExportResource, open_stream: Any, name: str
) -> Any:
    """The lazy run of an incremental export, for its IO manager (see source.IncrementalExport)."""
    increment = spec.incremental
    assert increment is not None
    shared = SharedConnection(snowflake)  # the bound and the window on one sign-in
    full_refresh = bool((context.op_execution_context.op_config or {}).get(FULL_REFRESH))

    def upper() -> CursorValue | None:
        sql = max_sql(spec.sql, increment.cursor)
        context.log.info(f"Fixing the upper bound of {name}: {one_line(sql)}")
        try:
            value = query_value(
                snowflake,
                sql,
                timeout_seconds=snowflake.query_timeout_seconds,
                query_tag=query_tag(spec, context.run.run_id),
                connection=shared,
            )
        except Exception as error:
            raise _failed_in_snowflake(name, error) from error
        try:
            return CursorValue.from_arrow(value, increment.cursor.name)
        except CursorError as error:
            raise ExportFailed(f"export {name}: {spec.label}.incremental.cursor: {error}", transient=False) from error

    def open_window(window: CursorWindow) -> ExportStream:
        return open_stream(
            window.sql(spec.sql, increment.cursor), f"{name} ({increment.cursor.name} in {window.describe()})", shared
        )

    return IncrementalExport(
        spec=increment, full_refresh=full_refresh, upper=upper, open=open_window, close=shared.close
    )


def _asset_decorator(
    spec: ExportSpec,
    destination_kind: str,
    retry_policy: RetryPolicy | None,
    partitions_def: PartitionsDefinition | None,
    deps: Sequence[AssetKey],
) -> Any:
    return asset(
        key=AssetKey(list(spec.asset_key_path)),
        deps=list(deps),
        automation_condition=AutomationCondition.eager() if spec.automation == "on_change" else None,
        freshness_policy=spec.freshness.policy() if spec.freshness else None,
        partitions_def=partitions_def,
        # A range (a backfill, --partition-range) is one run, each partition committed on its own.
        # Unpartitioned exports get it too, so that `--select "*" --partition-range` runs a mixed list.
        backfill_policy=BackfillPolicy.single_run(),
        group_name=GROUP_NAME,
        pool=POOL,
        kinds={"snowflake", destination_kind, spec.file_type},
        description=_description(spec),
        code_version=spec.code_version,
        io_manager_key=io_manager_key(spec.file_type),
        config_schema=(
            {
                FULL_REFRESH: Field(
                    bool,
                    default_value=False,
                    description="Export every row again as a new generation, and commit a manifest listing "
                    "only it (instead of the rows past the committed mark).",
                )
            }
            if spec.incremental
            else None
        ),
        metadata={
            "s3_path": spec.s3_path,
            "file_type": spec.file_type,
            "sql": spec.sql,
            "format_options": dict(spec.format_options),
            "gzip": spec.gzip,
            "split": spec.split,
            "method": spec.method,
            **({} if spec.preview else {"preview_rows": 0}),
            **code_references(spec),
        },
        retry_policy=retry_policy,
    )


def _utc(moment: datetime) -> datetime:
    """A window bound from Dagster (aware, UTC) as the naive UTC time the SQL literal takes."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def build_export_assets(
    specs: tuple[ExportSpec, ...],
    destination_kind: str = "s3",
    retry_policy: RetryPolicy | None = None,
    loads: Sequence[LoadSpec] = (),
    home: Home = NO_HOME,
    load_home: Home | None = None,
) -> list[AssetsDefinition]:
    """One asset per export, each downstream of the tables it reads (exports/sources.py), names
    resolved against `home` (the loads' targets against `load_home`, by default the same). The
    list's skip_unchanged exports read their tables' change tokens together, once per run, but
    for those that read a table a load of the list writes, or that wait in the run for any other
    asset (see exports/unchanged.py)."""
    loaded = loaded_tables(loads, load_home or home).keys()
    run_tokens = RunTokens(
        {
            AssetKey(list(spec.asset_key_path)): spec.source_tables
            for spec in specs
            if spec.skip_unchanged and not loaded & {home.resolve(table) for table in spec.source_tables}
        }
    )
    return [
        build_export_asset(
            spec, destination_kind, retry_policy, upstream_keys(spec, loads, home, load_home), run_tokens
        )
        for spec in specs
    ]


def _description(spec: ExportSpec) -> str:
    what = f"the whole table `{spec.table}`" if spec.query is None else "the result of the query below"
    where = f"`{spec.s3_path}`"
    if spec.is_table:
        where = f"the table at `{spec.s3_path}/`" + (
            f" (`{'.'.join(spec.iceberg_name)}` in the Iceberg catalog)," if spec.iceberg_name else ","
        )
    if spec.output_prefix is not None:
        where = f"parts under `{spec.output_prefix}/`, listed by `{spec.output_prefix}/manifest.json`,"
    lines = [
        f"Exports {what} from Snowflake to {where} as {spec.file_type}.",
        "",
        "```sql",
        spec.sql,
        "```",
    ]
    if spec.partition:
        p = spec.partition
        lines += [
            "",
            f"Partitioned {p.granularity} by `{p.column.name}` from {p.start:%Y-%m-%d %H:%M} UTC: each "
            f"partition's rows (`{p.column.name} >= start AND {p.column.name} < end`) go to `{spec.s3_path}` "
            "with `{partition}` replaced by its key.",
        ]
    if spec.method == "unload":
        lines += [
            "",
            "Unloaded by Snowflake (`COPY INTO` the export stage): no row passes through the worker; the project "
            "writes the manifest after checking each file.",
        ]
    if spec.incremental:
        cursor = spec.incremental.cursor.name
        lookback = f", re-reading {spec.incremental.lookback.text} before it" if spec.incremental.lookback else ""
        lines += [
            "",
            f"Incremental by `{cursor}`: each run exports the rows past the committed mark{lookback} "
            f"(`{cursor} <= MAX({cursor})` fixed first) as new parts, and commits them with the new mark "
            "in one manifest write.",
        ]
    if spec.schedule:
        lines += ["", f"Scheduled: `{spec.schedule}` (UTC)."]
    return "\n".join(lines)
