"""What every asset of the project shares, exports and loads alike: the pool that bounds how many
of them work on Snowflake at once, the UI's source link to the entry in the export list, and SQL
on one line for a log message. Neither direction's asset module owns these, so neither imports
the other."""

from __future__ import annotations

import warnings

from dagster import BetaWarning, CodeReferencesMetadataValue, LocalFileCodeReference

from data_migration.config import ExportSpec, LoadSpec

# Every export and load (and every check that queries Snowflake) runs in this Dagster concurrency
# pool, so a deployment caps the warehouse queries in flight across all runs, schedules and
# backfills: `dagster instance concurrency set snowflake_exports 4`. Without a limit, the pool
# limits nothing.
POOL = "snowflake_exports"


def code_references(spec: ExportSpec | LoadSpec) -> dict[str, CodeReferencesMetadataValue]:
    """The UI's source link: the entry in the export list (file and line)."""
    if spec.source_path is None:
        return {}
    # Beta in Dagster 1.13: its warning would print on every load of the definitions, per export.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        reference = LocalFileCodeReference(
            file_path=spec.source_path, line_number=spec.source_line, label=f"{spec.label} in the export list"
        )
        return {"dagster/code_references": CodeReferencesMetadataValue(code_references=[reference])}


def one_line(sql: str, limit: int = 200) -> str:
    """SQL on one line for a log message, cut at `limit` characters."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
