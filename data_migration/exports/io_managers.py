"""IO managers, one per file type (parquet, csv, json): each joins a format writer to the object
store. Exports to tables (iceberg, delta) have their own, in tables.py.

handle_output streams an export's batches into one object (or parts and a manifest, see
files/layout.py) and records what landed (row count, schema, URI, size, checksum, preview) as
materialization metadata; load_input reads an export back as a pandas DataFrame for downstream
assets.

handle_output takes a FileExport (exports/runs.py): the run and the typed spec of the list the
code location built, which alone says where and how it is written (`written_as`); the asset's
metadata, which a component's post_processing or a translator may rewrite, is for people.
load_input still finds an upstream export through that metadata (s3_path, split, gzip).

For an incremental export (exports/increments.py) handle_output also runs the increment's steps
in their order: read the committed manifest and its mark, fix the upper bound, plan the window, stream it
into new parts, and commit them with the new mark on the manifest version it read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableRecord,
    TableSchema,
)

from data_migration.config import ExportSpec
from data_migration.config.cursors import CursorError
from data_migration.config.paths import split_prefix
from data_migration.config.windows import PLACEHOLDER, object_key
from data_migration.errors import ExportFailed, is_transient
from data_migration.exports.increments import STATE_FIELD, Mark, MarkMismatch, plan
from data_migration.exports.metadata import (
    PREVIEW_ROWS,
    column_schema,
    increment_metadata,
    limits,
    preview_row,
    split_metadata,
    table_schema,
    throughput,
    unchanged_metadata,
    window_fields,
)
from data_migration.exports.progress import DEFAULT_INTERVAL_SECONDS, ProgressReporter
from data_migration.exports.runs import FileExport, IncrementalExport, UnloadExport
from data_migration.exports.unchanged import SOURCE_TOKENS, ConditionalExport, changed_at, kept_output, recorded
from data_migration.exports.unload import remove_folder, stored_parts, unload_sql
from data_migration.files.commit import Base, begin_generation, commit_parts, manifest_key
from data_migration.files.formats import FORMATS, decompressed
from data_migration.files.layout import (
    ManifestError,
    Split,
    export_files,
    read_committed,
    read_manifest,
    verified_bytes,
    write_export,
)
from data_migration.files.storage import ObjectStore
from data_migration.snowflake.queries import ExportStream


class ExportIOManager(ConfigurableIOManager):
    """Writes each export as one object of `file_type` in `store`; one instance per file type."""

    store: ObjectStore
    file_type: str
    progress_seconds: float = DEFAULT_INTERVAL_SECONDS  # how often a streaming export logs progress
    # Rows shown in the materialization's preview; 0 (DATA_MIGRATION_PREVIEW=off, or an export's
    # preview: false) shows none, so no row value reaches Dagster's event log.
    preview_rows: int = PREVIEW_ROWS

    def handle_output(self, context: OutputContext, obj: FileExport) -> None:
        """Write `obj.run` where and as `obj.spec` says: the typed spec of the list the code location
        built, never the asset's metadata (which a component's post_processing may rewrite)."""
        if not isinstance(obj, FileExport):
            raise TypeError(f"{context.asset_key.to_user_string()}: the export IO manager takes a FileExport")
        name = context.asset_key.to_user_string()
        meta = written_as(obj.spec)
        run = obj.run
        if isinstance(run, ConditionalExport):
            try:
                self._conditional(context, run, name, meta)
            finally:
                run.close()
            return
        self._export(context, run, name, meta)

    def _conditional(self, context: OutputContext, obj: ConditionalExport, name: str, meta: Mapping[str, Any]) -> None:
        """skip_unchanged: keep the export when no table it reads changed, else run it as usual."""
        key = meta["s3_path"]
        try:
            kept = kept_output(self.store, key, Split.from_metadata(meta.get("split")), obj)
        except Exception as error:  # noqa: BLE001 - not knowing is a reason to export, not to fail
            context.log.warning(f"Could not tell whether {name} is unchanged ({type(error).__name__}: {error})")
            kept = None
        if kept is None:
            context.log.info(f"Exporting {name}: a table it reads changed, or nothing recorded says otherwise")
            self._export(context, obj.run(), name, meta, obj)
            return
        context.log.info(
            f"Unchanged: {name}: no table it reads has changed since {changed_at(obj.tokens)}; "
            f"kept {kept['dagster/uri'].value}, nothing written"
        )
        context.add_output_metadata(kept)

    def _export(
        self,
        context: OutputContext,
        obj: Any,
        name: str,
        meta: Mapping[str, Any],
        conditional: ConditionalExport | None = None,
    ) -> None:
        tokens = conditional.record if conditional else None
        if isinstance(obj, UnloadExport):
            try:
                metadata = self._write_unload(context, obj, name, meta, tokens)
                context.add_output_metadata({**metadata, **recorded(conditional)})
            finally:
                obj.close()
            return
        if isinstance(obj, IncrementalExport):
            try:
                context.add_output_metadata(self._write_increment(context, obj, name, meta))
            finally:
                obj.close()
            return
        if isinstance(obj, ExportStream):
            key = meta["s3_path"]
            context.add_output_metadata(
                {**self._write(context, obj, key, name, meta, tokens=tokens), **recorded(conditional)}
            )
            return
        # One partition after another, each committed on its own before the next query runs:
        # when one fails, those before it stay committed (the same bytes a rerun writes).
        try:
            for window in obj.windows:
                key = object_key(meta["s3_path"], window.key)
                metadata = self._write(context, obj.open(window), key, f"{name} partition {window.key}", meta)
                metadata["partition_window"] = MetadataValue.text(
                    f"[{window.start:%Y-%m-%d %H:%M}, {window.end:%Y-%m-%d %H:%M}) UTC"
                )
                obj.record(window.key, metadata)
        finally:
            obj.close()

    def _write_unload(
        self,
        context: OutputContext,
        obj: UnloadExport,
        name: str,
        meta: Mapping[str, Any],
        tokens: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Have Snowflake unload into a new generation folder, check its files, commit the manifest."""
        key = meta["s3_path"]
        split = Split.from_metadata(meta.get("split"))
        compression = str((meta.get("format_options") or {}).get("compression", "snappy"))
        started_at = time.monotonic()
        base, started, generation = begin_generation(self.store, key)
        folder = f"{split_prefix(key)}/{generation}"
        columns = obj.describe()
        sql = unload_sql(obj.stage, folder, meta["sql"], columns, split.max_bytes if split else None, compression)
        try:
            query_id, output = obj.run(sql)
            parts = stored_parts(self.store, folder, output)
        except BaseException as error:
            removed = _quietly_removed(self.store, folder)
            if isinstance(error, ExportFailed) or not isinstance(error, Exception):
                raise
            raise ExportFailed(
                f"export {name} unload to {self.store.uri(folder)}/ failed ({type(error).__name__}): {error}"
                + (f"; removed the {removed} file(s) it had written" if removed else ""),
                transient=is_transient(error),
            ) from error

        def describe() -> dict[str, Any]:
            return {
                "export": name,
                "run_id": context.run_id,
                "snowflake_query_id": query_id,
                "method": "unload",
                "columns": [{"name": c.name, "snowflake_type": c.snowflake_type} for c in columns],
                **({SOURCE_TOKENS: tokens} if tokens else {}),
            }

        try:
            result = commit_parts(self.store, key, base, generation, started, parts, "parquet", compression, describe)
        except Exception as error:
            raise ExportFailed(
                f"export {name} to {self.store.uri(manifest_key(key))} failed ({type(error).__name__}): {error}",
                transient=is_transient(error),
            ) from error
        elapsed = round(time.monotonic() - started_at, 3)
        context.log.info(
            f"Unload committed: {result.rows} rows in {len(parts)} file(s), {result.size} bytes, written by "
            f"Snowflake; 0 bytes of data through this process, in {elapsed:.1f}s -> {result.uri}"
        )
        return {
            "dagster/row_count": MetadataValue.int(result.rows),
            # Snowflake's own count of the rows it unloaded (its output row per file).
            "snowflake_row_count": MetadataValue.int(sum(int(row.get("ROW_COUNT") or 0) for row in output)),
            "dagster/column_schema": MetadataValue.table_schema(
                column_schema((c.name, c.snowflake_type, None) for c in columns)
            ),
            "dagster/uri": MetadataValue.path(result.uri),
            "size_bytes": MetadataValue.int(result.size),
            "sha256": MetadataValue.text(result.sha256),
            "file_type": MetadataValue.text(self.file_type),
            "format_options": MetadataValue.json({"compression": compression}),
            **split_metadata(result),
            "method": MetadataValue.text("unload"),
            # The unload's data goes from Snowflake to the bucket; this process reads only the
            # statement's output rows (one per file) and a HEAD per file.
            "worker_data_bytes": MetadataValue.int(0),
            "query": MetadataValue.md(f"```sql\n{sql}\n```"),
            "snowflake_query_id": MetadataValue.text(query_id or "unknown"),
            "elapsed_seconds": MetadataValue.float(elapsed),
            **throughput(result.rows, result.size, elapsed),
        }

    def _write_increment(
        self, context: OutputContext, obj: IncrementalExport, name: str, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Export the rows past the committed mark as new parts; commit them and the new mark."""
        key = meta["s3_path"]
        uri = self.store.uri(manifest_key(key))
        cursor = obj.spec.cursor.name
        refresh = f'data-migration run --full-refresh {name} (in Dagster: the op config {{"full_refresh": true}})'
        try:
            manifest, version = read_committed(self.store, key)
            mark = Mark.from_manifest(manifest.content) if manifest else None
        except (ManifestError, CursorError) as error:
            if not obj.full_refresh:
                raise ExportFailed(
                    f"export {name}: the committed manifest {uri} cannot be built on ({error}); "
                    f"a full refresh replaces it: {refresh}",
                    transient=False,
                ) from error
            found = self.store.read_versioned(manifest_key(key))
            manifest, version, mark = None, found[1] if found else None, None
        except Exception as error:
            raise ExportFailed(
                f"export {name}: reading {uri} failed ({type(error).__name__}): {error}", transient=is_transient(error)
            ) from error
        upper = obj.upper()
        try:
            window = plan(obj.spec, mark, upper, exists=version is not None, full_refresh=obj.full_refresh)
        except MarkMismatch as error:
            # Starting afresh would commit a manifest of this run's parts only, and its cleanup would
            # delete every earlier part: for a table that keeps only recent rows, history kept nowhere else.
            assert manifest is not None
            raise ExportFailed(
                f"export {name}: the committed manifest {uri} cannot be continued: {error}. Starting afresh "
                f"would retire its {len(manifest.parts)} file(s), {sum(p.rows for p in manifest.parts)} rows, so "
                f"nothing was written or removed; a full refresh starts the export again: {refresh}",
                transient=False,
            ) from error
        except CursorError as error:
            raise ExportFailed(f"export {name}: incremental by {cursor}: {error}", transient=False) from error
        if window is None:
            assert manifest is not None and mark is not None
            at = "no row has a cursor" if upper is None else f"MAX({cursor}) is {upper.text()}"
            context.log.info(f"Nothing past the mark of {name} ({at}): no new rows, nothing committed")
            return unchanged_metadata(manifest, mark, upper)
        retired = manifest if obj.full_refresh and manifest is not None and manifest.parts else None
        if retired is not None:
            context.log.info(
                f"Full refresh: retiring {len(retired.parts)} file(s), {sum(p.rows for p in retired.parts)} rows "
                f"of the previous manifest {uri}"
            )
        elif obj.full_refresh and version is not None and manifest is None:
            context.log.info(f"Full refresh: retiring the manifest {uri}, which cannot be read, and what it listed")
        context.log.info(f"Exporting {name}: {window.reason}, {cursor} in {window.describe()}")
        new_mark = Mark(cursor, window.upper)
        state = {**new_mark.to_manifest(), **window_fields(window), **obj.spec.describe()}
        files = () if window.fresh or manifest is None else tuple(manifest.content["files"])
        base = Base(version, files, {STATE_FIELD: state})
        metadata = self._write(context, obj.open(window), key, f"{name} ({window.describe()})", meta, base)
        return {**metadata, **increment_metadata(window, new_mark, state, retired)}

    def _write(
        self,
        context: OutputContext,
        obj: ExportStream,
        key: str,
        what: str,
        meta: Mapping[str, Any],
        base: Base | None = None,
        tokens: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Stream one export (or one partition, or one increment onto `base`) into `key`; return its
        materialization metadata."""
        options = dict(meta.get("format_options") or {})
        split = Split.from_metadata(meta.get("split"))
        fmt = FORMATS[self.file_type]
        uri = self.store.uri(manifest_key(key) if split else key)
        preview: list[dict[str, Any]] = []
        shown = 0 if meta.get("preview_rows") == 0 else self.preview_rows

        def batches() -> Any:
            for batch in obj.batches():
                if len(preview) < shown:
                    preview.extend(batch.slice(0, shown - len(preview)).to_pylist())
                yield batch

        def describe() -> dict[str, Any]:
            return {
                "export": context.asset_key.to_user_string(),
                "run_id": context.run_id,
                "snowflake_query_id": obj.query_id,
                "columns": [
                    {"name": column.name, "snowflake_type": column.snowflake_type, "arrow_type": str(field.type)}
                    for column, field in zip(obj.columns, obj.schema, strict=True)
                ],
                **({SOURCE_TOKENS: tokens} if tokens else {}),
            }

        part_limits = limits(split) if split else ""
        context.log.info(f"Uploading to {uri}" + (f" as parts of at most {part_limits}" if part_limits else ""))
        try:
            with obj:
                result = write_export(
                    self.store,
                    key,
                    fmt,
                    obj.schema,
                    batches(),
                    options=options,
                    gzip=bool(meta.get("gzip")),
                    split=split,
                    describe=describe,
                    progress=ProgressReporter(context.log, self.progress_seconds),
                    base=base,
                )
        except Exception as error:
            raise ExportFailed(
                f"export {what} to {uri} failed ({type(error).__name__}): {error}",
                transient=is_transient(error),
            ) from error
        elapsed = round(time.monotonic() - obj.started, 3)
        if result.stale_removed:
            context.log.info(
                f"Removed {result.stale_removed} unfinished upload(s) or superseded file(s) of earlier runs"
            )
        files = f" in {len(result.files)} files" if split else ""
        if base is not None:
            assert result.manifest is not None
            context.log.info(
                f"Increment committed: {obj.rows} new rows in {len(result.files)} file(s); the manifest lists "
                f"{result.rows} rows in {len(result.manifest['files'])} file(s), {result.size} bytes, "
                f"in {elapsed:.1f}s -> {result.uri}"
            )
        else:
            context.log.info(
                f"Export complete: {obj.rows} rows, {result.size} bytes{files} in {elapsed:.1f}s -> {result.uri}"
            )
        return {
            # The rows streamed from Snowflake into the export (what the checks compare with what
            # is stored); for an increment, plus the rows of the earlier parts it keeps.
            "dagster/row_count": MetadataValue.int(
                obj.rows + sum(int(e["rows"]) for e in (base.files if base else ()))
            ),
            **(
                {
                    "increment_rows": MetadataValue.int(obj.rows),
                    "increment_size_bytes": MetadataValue.int(sum(part.size for part in result.files)),
                    # The folder of this run's parts in the manifest, for the checks.
                    "increment_generation": MetadataValue.text(result.manifest["generation"]),
                }
                if base is not None and result.manifest
                else {}
            ),
            # What Snowflake said the query returned, for the row-count asset check.
            "snowflake_row_count": MetadataValue.int(obj.expected_rows)
            if obj.expected_rows is not None
            else MetadataValue.null(),
            "dagster/column_schema": MetadataValue.table_schema(table_schema(obj)),
            "dagster/uri": MetadataValue.path(result.uri),
            "size_bytes": MetadataValue.int(result.size),
            # Of the object, or of a split export's manifest (which holds each part's sha256).
            "sha256": MetadataValue.text(result.sha256),
            # The CRC32 the store keeps for the object, checked against the bytes written; the
            # asset checks compare it with a HEAD (a split export's manifest lists each part's).
            **(
                {"crc32": MetadataValue.text(result.files[0].checksum)}
                if not split and result.files[0].checksum
                else {}
            ),
            "file_type": MetadataValue.text(self.file_type),
            **({"format_options": MetadataValue.json(options)} if options else {}),
            **(split_metadata(result) if split else {}),
            "query": MetadataValue.md(f"```sql\n{obj.sql or meta['sql']}\n```"),
            "snowflake_query_id": MetadataValue.text(obj.query_id or "unknown"),
            "elapsed_seconds": MetadataValue.float(elapsed),
            # Plotted per materialization in the UI, so a slow export stands out.
            **throughput(obj.rows, sum(part.size for part in result.files), elapsed),
            **(
                {
                    "preview": MetadataValue.table(
                        records=[TableRecord(preview_row(row)) for row in preview],
                        schema=TableSchema(columns=[TableColumn(name, "string") for name in obj.schema.names]),
                    )
                }
                if shown
                else {}
            ),
        }

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        assert upstream is not None
        meta = upstream.definition_metadata
        template = meta["s3_path"]
        if PLACEHOLDER not in template:
            return self._read(template, meta).to_pandas()
        # A partitioned export: the partitions the downstream asset asks for, in order.
        tables = [self._read(object_key(template, key), meta) for key in context.asset_partition_keys]
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def _read(self, key: str, meta: Mapping[str, Any]) -> pa.Table:
        reader = FORMATS[self.file_type].reader
        parts = export_files(self.store, key, Split.from_metadata(meta.get("split")))
        if parts is None:
            with self.store.open_read(key) as source:
                return reader.read(decompressed(source, bool(meta.get("gzip"))))
        if not parts:  # an unload of no rows: Snowflake wrote no file
            names = [column["name"] for column in read_manifest(self.store, key).content.get("columns", [])]
            return pa.table({name: pa.array([], pa.null()) for name in names})
        tables = []
        for part in parts:  # only what the manifest lists, each checked against it
            with self.store.open_read(part.key) as source:
                verified_bytes(source, part)
                tables.append(reader.read(decompressed(source, bool(meta.get("gzip")))))
        return pa.concat_tables(tables, promote_options="permissive")


def written_as(spec: ExportSpec) -> dict[str, Any]:
    """How the IO manager writes an export, from its typed spec, in the shape the asset's
    metadata shows it (s3_path, split, format_options, gzip, sql, preview_rows)."""
    return {
        "s3_path": spec.s3_path,
        "split": spec.split,
        "format_options": dict(spec.format_options),
        "gzip": spec.gzip,
        "sql": spec.sql,
        **({} if spec.preview else {"preview_rows": 0}),
    }


def export_io_managers(
    store: ObjectStore, progress_seconds: float = DEFAULT_INTERVAL_SECONDS, preview_rows: int = PREVIEW_ROWS
) -> dict[str, ExportIOManager]:
    """The IO manager resources, keyed as the assets ask for them, one per registered format."""
    return {
        io_manager_key(name): ExportIOManager(
            store=store, file_type=name, progress_seconds=progress_seconds, preview_rows=preview_rows
        )
        for name in FORMATS
    }


def io_manager_key(file_type: str) -> str:
    return f"{file_type}_io_manager"


def _quietly_removed(store: ObjectStore, folder: str) -> int:
    try:
        return remove_folder(store, folder)
    except Exception:  # noqa: BLE001 - the failure being reported matters more; no manifest lists these
        return 0
