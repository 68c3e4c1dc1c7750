"""The asset factory: a pure function from an ExportSpec to one software-defined asset."""

from __future__ import annotations

import json
import warnings

from dagster import (
    AssetKey,
    AssetsDefinition,
    BetaWarning,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    RetryPolicy,
    asset,
)

from data_migration.config import ExportSpec
from data_migration.errors import ExportFailed, is_transient
from data_migration.io_managers import io_manager_key
from data_migration.resources import SnowflakeExportResource
from data_migration.source import ExportStream, open_export_stream

GROUP_NAME = "snowflake_exports"


def build_export_asset(
    spec: ExportSpec, destination_kind: str = "s3", retry_policy: RetryPolicy | None = None
) -> AssetsDefinition:
    """One asset for one export: runs the export's SQL and hands the stream to its IO manager.

    `retry_policy` applies to transient failures only: permanent ones raise ExportFailed with
    retries disallowed.
    """

    @asset(
        key=AssetKey(list(spec.asset_key_path)),
        group_name=GROUP_NAME,
        kinds={"snowflake", destination_kind, spec.file_type},
        description=_description(spec),
        code_version=spec.code_version,
        io_manager_key=io_manager_key(spec.file_type),
        metadata={
            "s3_path": spec.s3_path,
            "file_type": spec.file_type,
            "sql": spec.sql,
            "format_options": dict(spec.format_options),
            "gzip": spec.gzip,
            "split": spec.split,
            **_code_references(spec),
        },
        retry_policy=retry_policy,
    )
    # `context` is left unannotated: Dagster compares that annotation with its context classes
    # themselves, and this module's annotations are strings (from __future__ import annotations).
    def _export(context, snowflake: SnowflakeExportResource) -> ExportStream:
        context.log.info(f"Fetching data from Snowflake for {spec.table}: {_one_line(spec.sql)}")
        try:
            return open_export_stream(
                snowflake,
                spec.sql,
                timeout_seconds=snowflake.query_timeout_seconds,
                log=context.log,
                query_tag=query_tag(spec, context.run.run_id),
            )
        except Exception as error:
            raise ExportFailed(
                f"export {context.asset_key.to_user_string()} failed in Snowflake ({type(error).__name__}): {error}",
                transient=is_transient(error),
            ) from error

    return _export


def build_export_assets(
    specs: tuple[ExportSpec, ...], destination_kind: str = "s3", retry_policy: RetryPolicy | None = None
) -> list[AssetsDefinition]:
    return [build_export_asset(spec, destination_kind, retry_policy) for spec in specs]


def query_tag(spec: ExportSpec, run_id: str) -> str:
    """JSON naming the export and the run, for finding its queries in Snowflake's QUERY_HISTORY."""
    asset = "/".join(spec.asset_key_path)[:1000]  # QUERY_TAG holds at most 2000 characters
    return json.dumps(
        {"app": "data-migration", "asset": asset, "run_id": run_id, "code_version": spec.code_version},
        separators=(",", ":"),
    )


def _description(spec: ExportSpec) -> str:
    what = f"the whole table `{spec.table}`" if spec.query is None else "the result of the query below"
    where = f"`{spec.s3_path}`"
    if spec.output_prefix is not None:
        where = f"parts under `{spec.output_prefix}/`, listed by `{spec.output_prefix}/manifest.json`,"
    lines = [
        f"Exports {what} from Snowflake to {where} as {spec.file_type}.",
        "",
        "```sql",
        spec.sql,
        "```",
    ]
    if spec.schedule:
        lines += ["", f"Scheduled: `{spec.schedule}` (UTC)."]
    return "\n".join(lines)


def _code_references(spec: ExportSpec) -> dict[str, CodeReferencesMetadataValue]:
    """The UI's source link: the export's entry in the export list (file and line)."""
    if spec.source_path is None:
        return {}
    # Beta in Dagster 1.13: its warning would print on every load of the definitions, per export.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        reference = LocalFileCodeReference(
            file_path=spec.source_path, line_number=spec.source_line, label=f"{spec.label} in the export list"
        )
        return {"dagster/code_references": CodeReferencesMetadataValue(code_references=[reference])}


def _one_line(sql: str, limit: int = 200) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
