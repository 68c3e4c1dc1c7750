"""The materialization metadata of an export, as the UI shows it and the checks read it: the
column schema, the parts of a split export, throughput, the preview, an increment's window (and
what a full refresh retired)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from data_migration.config.cursors import CursorWindow
from data_migration.exports.increments import Mark
from data_migration.files.layout import Manifest, Split, WriteResult
from data_migration.snowflake.queries import ExportStream

PREVIEW_ROWS = 10
_PARTS_SHOWN = 50  # the manifest lists them all
_PREVIEW_TEXT = 120


def limits(split: Split) -> str:
    limits = []
    if split.max_rows is not None:
        limits.append(f"{split.max_rows:,} rows")
    if split.max_bytes is not None:
        limits.append(f"{split.max_bytes / 1024 / 1024:g} MiB")
    return " or ".join(limits)


def split_metadata(result: WriteResult) -> dict[str, Any]:
    """The manifest's file count; the files this run wrote (all of a split export's, an
    increment's new ones)."""
    shown = result.files[:_PARTS_SHOWN]
    return {
        "file_count": MetadataValue.int(len(result.manifest["files"]) if result.manifest else len(result.files)),
        "files": MetadataValue.table(
            records=[
                TableRecord({"uri": p.uri, "rows": p.rows, "size_bytes": p.size, "sha256": p.sha256}) for p in shown
            ],
            schema=TableSchema(
                columns=[
                    TableColumn("uri", "string"),
                    TableColumn("rows", "int"),
                    TableColumn("size_bytes", "int"),
                    TableColumn("sha256", "string"),
                ]
            ),
        ),
    }


def window_fields(window: CursorWindow) -> dict[str, Any]:
    return {
        "lower": window.lower.text() if window.lower else None,
        "lower_inclusive": window.lower_inclusive,
        "upper": window.upper.text() if window.upper else None,
    }


def increment_metadata(
    window: CursorWindow, mark: Mark, state: Mapping[str, Any], retired: Manifest | None = None
) -> dict[str, Any]:
    """A committed increment's window and mark; for a full refresh, what of the previous manifest
    (`retired`) it no longer lists."""
    return {
        "increment_lower": MetadataValue.text(
            "none" if window.lower is None else f"{'>=' if window.lower_inclusive else '>'} {window.lower.text()}"
        ),
        "increment_upper": MetadataValue.text("none" if window.upper is None else f"<= {window.upper.text()}"),
        "increment_mark": MetadataValue.text(mark.value.text() if mark.value else "none"),
        "increment_reason": MetadataValue.text(window.reason),
        "increment_committed": MetadataValue.bool(True),
        "full_refresh": MetadataValue.bool(window.fresh),
        "increment": MetadataValue.json(dict(state)),
        **retired_metadata(retired),
    }


def retired_metadata(previous: Manifest | None) -> dict[str, Any]:
    """The files and rows of the previous manifest a full refresh retired; nothing when it listed none."""
    if previous is None or not previous.parts:
        return {}
    return {
        "retired_files": MetadataValue.int(len(previous.parts)),
        "retired_rows": MetadataValue.int(sum(part.rows for part in previous.parts)),
    }


def unchanged_metadata(manifest: Manifest, mark: Mark, upper: Any) -> dict[str, Any]:
    """A run that found nothing past the mark: what the export holds, unchanged."""
    columns = manifest.content.get("columns") or []
    return {
        "dagster/row_count": MetadataValue.int(manifest.rows),
        "increment_rows": MetadataValue.int(0),
        "increment_size_bytes": MetadataValue.int(0),
        # Nothing is past the mark, so Snowflake's count for the (empty) window is 0.
        "snowflake_row_count": MetadataValue.int(0),
        "dagster/column_schema": MetadataValue.table_schema(
            column_schema((c["name"], c["snowflake_type"], c.get("arrow_type")) for c in columns)
        ),
        "dagster/uri": MetadataValue.path(manifest.uri),
        "size_bytes": MetadataValue.int(manifest.size),
        "sha256": MetadataValue.text(manifest.sha256),
        "file_count": MetadataValue.int(len(manifest.parts)),
        "increment_lower": MetadataValue.text("none"),
        "increment_upper": MetadataValue.text("none" if upper is None else f"<= {upper.text()}"),
        "increment_mark": MetadataValue.text(mark.value.text() if mark.value else "none"),
        "increment_reason": MetadataValue.text("nothing past the mark"),
        "increment_committed": MetadataValue.bool(False),
        "full_refresh": MetadataValue.bool(False),
    }


def throughput(rows: int, size: int, seconds: float) -> dict[str, MetadataValue]:
    """Rows and megabytes (10^6 bytes, as written) per second, from query start to commit."""
    seconds = max(seconds, 1e-3)
    return {
        "rows_per_second": MetadataValue.float(round(rows / seconds, 1)),
        "megabytes_per_second": MetadataValue.float(round(size / 1e6 / seconds, 3)),
    }


def table_schema(stream: ExportStream) -> TableSchema:
    return column_schema(
        (column.name, column.snowflake_type, str(field.type))
        for column, field in zip(stream.columns, stream.schema, strict=True)
    )


def column_schema(columns: Iterable[tuple[str, str, str | None]]) -> TableSchema:
    """The UI's column schema: each column's name, Snowflake type and (when known) Arrow type."""
    return TableSchema(
        columns=[
            TableColumn(name=name, type=snowflake_type, description=f"Arrow: {arrow}" if arrow else None)
            for name, snowflake_type, arrow in columns
        ]
    )


def preview_row(row: dict[str, Any]) -> dict[str, str | None]:
    cells: dict[str, str | None] = {}
    for name, value in row.items():
        text = None if value is None else (value.hex() if isinstance(value, bytes) else str(value))
        if text is not None and len(text) > _PREVIEW_TEXT:
            text = text[: _PREVIEW_TEXT - 1] + "…"
        cells[name] = text
    return cells
