"""The load asset factory: a pure function from a LoadSpec to one software-defined asset (the
mirror of exports/assets.py), its row count check and the metadata of what it loaded."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from data_migration.config import LoadSpec
from data_migration.config.names import NO_HOME, Home
from data_migration.conventions import POOL, code_references
from data_migration.errors import LoadFailed, is_transient
from data_migration.files.layout import ManifestError
from data_migration.files.storage import ObjectStore
from data_migration.loads.apply import ConcurrentAppend, LoadOutcome, Session, run_load
from data_migration.loads.sources import LoadError, LoadSource, resolve_source
from data_migration.loads.sql import (
    LoadSqlError,
    qualified,
)
from data_migration.snowflake.resource import SnowflakeExportResource
from data_migration.snowflake.tags import load_query_tag

GROUP_NAME = "snowflake_loads"
ROW_COUNT_CHECK = "target_row_count"
_FILES_SHOWN = 50


# The asset -----------------------------------------------------------------------------------


def build_load_asset(spec: LoadSpec, retry_policy: RetryPolicy | None = None, home: Home = NO_HOME) -> AssetsDefinition:
    """One asset for one load; downstream of its export when it has `from`. Its metadata names the
    target as Snowflake resolves it in `home` (`table_parts`), by which definitions.py links it to
    the exports of other lists that read the table."""
    key = AssetKey(list(spec.asset_key_path))
    checks = (
        [
            AssetCheckSpec(
                ROW_COUNT_CHECK,
                asset=key,
                description="After a replace, the table holds exactly the rows the load loaded.",
            )
        ]
        if spec.mode == "replace"
        else []
    )

    @asset(
        key=key,
        deps=[AssetKey(list(spec.source.asset_key_path))] if spec.source else [],
        group_name=GROUP_NAME,
        pool=POOL,
        kinds={"snowflake", "parquet"},
        description=_description(spec),
        code_version=spec.code_version,
        metadata={
            "target": qualified(spec.object_name),
            "table_parts": list(home.resolve(tuple(part.name for part in spec.object_name))),
            "mode": spec.mode,
            **code_references(spec),
        },
        check_specs=checks,
        retry_policy=retry_policy,
        freshness_policy=spec.freshness.policy() if spec.freshness else None,
    )
    def _load(context, snowflake_load: SnowflakeExportResource, object_store: ObjectStore) -> MaterializeResult:
        name = context.asset_key.to_user_string()
        started = time.monotonic()
        latest = None
        if spec.source is not None:
            event = context.instance.get_latest_materialization_event(AssetKey(list(spec.source.asset_key_path)))
            latest = dict(event.asset_materialization.metadata) if event and event.asset_materialization else None
        session = Session(snowflake_load, context.log, load_query_tag(spec, context.run.run_id))
        try:
            source = resolve_source(spec, object_store, latest)
            context.log.info(
                f"Loading {len(source.files)} file(s), {source.rows} rows, from {source.origin} into "
                f"{qualified(spec.object_name)} ({spec.mode})"
            )
            outcome = run_load(
                spec,
                source,
                session,
                object_store,
                snowflake_load.export_stage,
                context.run.run_id,
                still_running=lambda run_id: _still_running(context.instance, run_id, context.run.run_id),
            )
        except Exception as error:
            transient = isinstance(error, ConcurrentAppend) or (
                is_transient(error) and not isinstance(error, (LoadError, LoadSqlError, ManifestError))
            )
            raise LoadFailed(
                f"load {name} into {qualified(spec.object_name)} failed ({type(error).__name__}): {error}",
                transient=transient,
            ) from error
        finally:
            session.close()
        elapsed = round(time.monotonic() - started, 3)
        context.log.info(
            f"Load complete: {outcome.rows_loaded} rows from {len(outcome.files)} file(s) into "
            f"{qualified(spec.object_name)} ({spec.mode}); it holds {outcome.target_rows} rows, in {elapsed:.1f}s"
        )
        metadata = _metadata(spec, source, outcome, session.query_ids, elapsed)
        results = (
            [
                AssetCheckResult(
                    check_name=ROW_COUNT_CHECK,
                    passed=outcome.target_rows == outcome.rows_loaded,
                    severity=AssetCheckSeverity.ERROR,
                    metadata={
                        "target_rows": MetadataValue.int(outcome.target_rows),
                        "rows_loaded": MetadataValue.int(outcome.rows_loaded),
                    },
                )
            ]
            if checks
            else []
        )
        return MaterializeResult(metadata=metadata, check_results=results)

    return _load


def _still_running(instance: Any, run_id: str, own_run_id: str) -> bool:
    """Whether a run may still be using its helper tables: this run (an earlier attempt of this
    step may be alive still), or a run the instance has unfinished. A run the instance does not
    know (another Dagster instance's, or one deleted) counts as finished."""
    if run_id == own_run_id:
        return True
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def _metadata(
    spec: LoadSpec, source: LoadSource, outcome: LoadOutcome, query_ids: Sequence[str], elapsed: float
) -> dict[str, Any]:
    shown = outcome.files[:_FILES_SHOWN]
    return {
        "dagster/row_count": MetadataValue.int(outcome.target_rows),
        "rows_loaded": MetadataValue.int(outcome.rows_loaded),
        "files_loaded": MetadataValue.int(len(outcome.files)),
        "files_skipped": MetadataValue.int(len(outcome.skipped)),
        **({"rows_inserted": MetadataValue.int(outcome.inserted)} if outcome.inserted is not None else {}),
        **({"rows_updated": MetadataValue.int(outcome.updated)} if outcome.updated is not None else {}),
        "mode": MetadataValue.text(spec.mode),
        "target": MetadataValue.text(qualified(spec.object_name)),
        "target_created": MetadataValue.bool(outcome.created),
        "source": MetadataValue.path(source.origin),
        "stage": MetadataValue.text(outcome.stage or "none (nothing new to load)"),
        "helpers_swept": MetadataValue.json([{"table": name, "run_id": run} for name, run in outcome.swept]),
        "snowflake_query_ids": MetadataValue.json(list(query_ids)),
        "elapsed_seconds": MetadataValue.float(elapsed),
        "dagster/column_schema": MetadataValue.table_schema(
            TableSchema(columns=[TableColumn(c.name, c.snowflake_type) for c in source.columns])
        ),
        "files": MetadataValue.table(
            records=[TableRecord({"uri": f.uri, "rows": f.rows, "size_bytes": f.size}) for f in shown],
            schema=TableSchema(
                columns=[TableColumn("uri", "string"), TableColumn("rows", "int"), TableColumn("size_bytes", "int")]
            ),
        ),
    }


def _description(spec: LoadSpec) -> str:
    where = f"the last committed output of `{spec.source.table}`" if spec.source else f"`{spec.s3_path}` in the bucket"
    how = {
        "replace": "replaces its rows: a new table is filled and swapped in with one `ALTER TABLE … SWAP WITH`",
        "append": "appends the files not loaded before (recorded in `DATA_MIGRATION_LOADED_FILES`)",
        "merge": f"merges on {', '.join(k.name for k in spec.keys)} with one `MERGE`",
    }[spec.mode]
    return f"Loads {where} into `{qualified(spec.object_name)}` through a stage, and {how}."


def build_load_assets(
    loads: Sequence[LoadSpec], retry_policy: RetryPolicy | None = None, home: Home = NO_HOME
) -> list[AssetsDefinition]:
    return [build_load_asset(spec, retry_policy, home) for spec in loads]
