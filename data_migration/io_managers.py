"""IO managers, one per file_type: each joins a format writer to the object store.

handle_output streams an export's batches into one object and records what landed (row count,
schema, URI, size, checksum, preview) as materialization metadata; load_input reads an export
back as a pandas DataFrame for downstream assets.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableRecord,
    TableSchema,
)

from data_migration.errors import ExportFailed, is_transient
from data_migration.formats import FORMATS, decompressed, gzip_writer
from data_migration.source import ExportStream
from data_migration.storage import ObjectStore

PREVIEW_ROWS = 10
_PREVIEW_TEXT = 120


class ExportIOManager(ConfigurableIOManager):
    """Writes each export as one object of `file_type` in `store`; one instance per file type."""

    store: ObjectStore
    file_type: str

    def handle_output(self, context: OutputContext, obj: ExportStream) -> None:
        key = context.definition_metadata["s3_path"]
        options = dict(context.definition_metadata.get("format_options") or {})
        is_gzip = bool(context.definition_metadata.get("gzip"))
        fmt = FORMATS[self.file_type]
        uri = self.store.uri(key)
        preview: list[dict[str, Any]] = []
        context.log.info(f"Uploading to {uri}")
        try:
            content_type = "application/gzip" if is_gzip else fmt.content_type
            with obj, self.store.open_write(key, content_type) as sink:
                target = gzip_writer(sink) if is_gzip else sink
                writer = fmt.writer(target, obj.schema, **options)
                for batch in obj.batches():
                    if len(preview) < PREVIEW_ROWS:
                        preview.extend(batch.slice(0, PREVIEW_ROWS - len(preview)).to_pylist())
                    writer.write_batch(batch)
                writer.close()
                if is_gzip:
                    target.close()  # writes the gzip trailer; the sink stays open for the store
        except Exception as error:
            raise ExportFailed(
                f"export {context.asset_key.to_user_string()} to {uri} failed "
                f"({type(error).__name__}): {error}",
                transient=is_transient(error),
            ) from error
        stored = sink.stored
        assert stored is not None
        elapsed = time.monotonic() - obj.started
        if stored.stale_uploads_removed:
            context.log.info(
                f"Removed {stored.stale_uploads_removed} unfinished upload(s) of {key} left by earlier runs"
            )
        context.log.info(
            f"Export complete: {obj.rows} rows, {stored.size} bytes in {elapsed:.1f}s -> {stored.uri}"
        )
        context.add_output_metadata(
            {
                "dagster/row_count": MetadataValue.int(obj.rows),
                # What Snowflake said the query returned, for the row-count asset check.
                "snowflake_row_count": MetadataValue.int(obj.expected_rows)
                if obj.expected_rows is not None
                else MetadataValue.null(),
                "dagster/column_schema": MetadataValue.table_schema(_table_schema(obj)),
                "dagster/uri": MetadataValue.path(stored.uri),
                "size_bytes": MetadataValue.int(stored.size),
                "sha256": MetadataValue.text(stored.sha256),
                "file_type": MetadataValue.text(self.file_type),
                **({"format_options": MetadataValue.json(options)} if options else {}),
                "query": MetadataValue.md(f"```sql\n{context.definition_metadata['sql']}\n```"),
                "snowflake_query_id": MetadataValue.text(obj.query_id or "unknown"),
                "elapsed_seconds": MetadataValue.float(round(elapsed, 3)),
                "preview": MetadataValue.table(
                    records=[TableRecord(_preview_row(row)) for row in preview],
                    schema=TableSchema(columns=[TableColumn(name, "string") for name in obj.schema.names]),
                ),
            }
        )

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        assert upstream is not None
        key = upstream.definition_metadata["s3_path"]
        with self.store.open_read(key) as source:
            data = decompressed(source, bool(upstream.definition_metadata.get("gzip")))
            return FORMATS[self.file_type].reader.read_pandas(data)


def export_io_managers(store: ObjectStore) -> dict[str, ExportIOManager]:
    """The IO manager resources, keyed as the assets ask for them, one per registered format."""
    return {io_manager_key(name): ExportIOManager(store=store, file_type=name) for name in FORMATS}


def io_manager_key(file_type: str) -> str:
    return f"{file_type}_io_manager"


def _table_schema(stream: ExportStream) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name=column.name, type=column.snowflake_type, description=f"Arrow: {field.type}")
            for column, field in zip(stream.columns, stream.schema)
        ]
    )


def _preview_row(row: dict[str, Any]) -> dict[str, str | None]:
    cells: dict[str, str | None] = {}
    for name, value in row.items():
        text = None if value is None else (value.hex() if isinstance(value, bytes) else str(value))
        if text is not None and len(text) > _PREVIEW_TEXT:
            text = text[: _PREVIEW_TEXT - 1] + "…"
        cells[name] = text
    return cells


