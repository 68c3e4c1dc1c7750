"""The IO manager for exports to open table formats (file_type iceberg and delta): it owns one
table export's run from the query's stream to the committed table, and what the UI shows of it.

A full export, in this order:
1. the write schema (tables/types.py): every column the format cannot hold is refused, all of
   them named in one error, before anything is created or written;
2. the table: created at `<location>` (the store's URI of s3_path) if missing, Iceberg through
   the catalog (exports/lake.py), Delta at its folder; then its current version, the run's base;
3. the rows: the stream's batches, one at a time (bounded memory: one Parquet row group is
   buffered, never the result), into Parquet data files named by tables/naming.py under
   `<location>/data/`, a new file every ROLL_ROWS rows or ROLL_BYTES bytes, each written
   all-or-nothing by the export's object store;
4. ONE replace commit of those files (tables/iceberg.py or tables/delta.py): the new snapshot
   or version holds exactly this run's rows, the previous one stays readable by time travel;
5. the orphan sweep: data files no snapshot or version lists, of runs that are over (a failed
   or killed run's files), are deleted; a run still going is left alone.
A failure before 4 leaves the table as it was (its files are orphans for the next run's sweep).

Partition runs, increments, skip_unchanged and unload are refused by the list (config/exports.py)
until they are built; `load_input` is not built either (read a table with its format's readers).
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from data_migration.config import ExportSpec
from data_migration.errors import ExportFailed, is_transient
from data_migration.exports.io_managers import io_manager_key
from data_migration.exports.lake import LakeAccess
from data_migration.exports.metadata import column_schema, throughput
from data_migration.exports.progress import DEFAULT_INTERVAL_SECONDS, ProgressReporter
from data_migration.exports.runs import TableExport
from data_migration.exports.table_formats import FORMAT_SIDES, FormatSide, leave_alone
from data_migration.files.formats.parquet import ROW_GROUP_ROWS, ParquetWriter
from data_migration.files.storage.base import MiB
from data_migration.snowflake.queries import ExportStream
from data_migration.tables.commit import CommitResult, TableCommitError, TableWrite, WriteMode
from data_migration.tables.naming import data_file_uri
from data_migration.tables.types import TableTypeError, conform

ROLL_ROWS = 1_000_000  # rows per data file, at most (about; a file closes after the batch that passes it)
ROLL_BYTES = 128 * MiB  # bytes per data file, about (as written so far: row groups are written whole)
PARQUET = "application/vnd.apache.parquet"
RUN_ID = "data-migration.run-id"
EXPORT = "data-migration.export"


@dataclass(frozen=True)
class DataFile:
    uri: str
    rows: int
    size: int


class TableIOManager(ConfigurableIOManager):
    """Writes each export of `file_type` (iceberg or delta) as a table's new snapshot/version."""

    lake: LakeAccess
    file_type: str
    progress_seconds: float = DEFAULT_INTERVAL_SECONDS

    def handle_output(self, context: OutputContext, obj: TableExport) -> None:
        if not isinstance(obj, TableExport):
            raise TypeError(f"the {self.file_type} IO manager writes a TableExport, not {type(obj).__name__}")
        spec, stream, name = obj.spec, obj.stream, context.asset_key.to_user_string()
        started = dt.datetime.now(dt.UTC)
        location = self.lake.location(spec.s3_path)
        with stream:
            try:
                side = FORMAT_SIDES[self.file_type](self.lake, spec, location)
                schema = side.write_schema(stream.schema)
                context.log.info(f"Exporting {name} to the {self.file_type} table {side.describe()}")
                base = side.open(schema)
                files = self._write_files(context, spec, stream, schema, started)
                write = TableWrite(
                    WriteMode.REPLACE,
                    tuple(f.uri for f in files),
                    properties={RUN_ID: context.run_id, EXPORT: name},
                    base=base,
                )
                result = side.commit(write)
            except TableTypeError as error:
                raise ExportFailed(f"export {name}: {error}", transient=False) from error
            except TableCommitError as error:
                raise ExportFailed(f"export {name} to {location} failed: {error}", transient=False) from error
            except ExportFailed:
                raise
            except Exception as error:
                raise ExportFailed(
                    f"export {name} to {location} failed ({type(error).__name__}): {error}",
                    transient=is_transient(error),
                ) from error
        removed = self._sweep(context, side, name)
        elapsed = round(time.monotonic() - stream.started, 3)
        context.log.info(
            f"Table committed: {stream.rows} rows in {len(files)} data file(s), {result.added_bytes} bytes, as "
            f"{side.version_label} {result.version} in {elapsed:.1f}s -> {result.metadata_location}"
        )
        context.add_output_metadata(
            {
                **self._metadata(spec, stream, schema, location, files, result, elapsed, removed),
                **side.metadata(result),
            }
        )

    def _write_files(
        self, context: OutputContext, spec: ExportSpec, stream: ExportStream, schema: pa.Schema, started: dt.datetime
    ) -> list[DataFile]:
        """Stream every batch into data files under `<location>/data/`, rolling to a new file at
        ROLL_ROWS rows or ROLL_BYTES bytes; the files written, in order."""
        options = dict(spec.format_options)
        files: list[DataFile] = []
        progress = ProgressReporter(context.log, self.progress_seconds)
        done_bytes = 0
        with ExitStack() as open_file:
            writer: ParquetWriter | None = None
            sink: Any = None
            key, rows = "", 0
            try:
                for batch in stream.batches():
                    if batch.num_rows == 0:
                        continue
                    if writer is None:
                        key = data_file_uri(spec.s3_path, context.run_id, started, len(files))
                        sink = open_file.enter_context(self.lake.store.open_write(key, PARQUET))
                        writer = ParquetWriter(
                            sink,
                            schema,
                            compression=str(options.get("compression", "snappy")),
                            row_group_rows=int(options.get("row_group_rows", ROW_GROUP_ROWS)),
                        )
                        rows = 0
                    writer.write_batch(conform(batch, schema))
                    rows += batch.num_rows
                    progress(stream.rows, done_bytes + sink.size)
                    if rows >= ROLL_ROWS or sink.size >= ROLL_BYTES:
                        files.append(self._close(writer, sink, open_file, key, rows))
                        done_bytes += files[-1].size
                        writer = None
                if writer is not None:
                    files.append(self._close(writer, sink, open_file, key, rows))
                    writer = None
            except BaseException:
                if writer is not None:
                    writer.abandon()  # the store discards the upload as the stack unwinds
                raise
        return files

    def _close(self, writer: ParquetWriter, sink: Any, open_file: ExitStack, key: str, rows: int) -> DataFile:
        """Finish the file (its footer), then commit its upload (the store's all-or-nothing write)."""
        writer.close()
        open_file.close()
        return DataFile(self.lake.store.uri(key), rows, sink.stored.size if sink.stored else sink.size)

    def _sweep(self, context: OutputContext, side: FormatSide, name: str) -> int:
        """Remove the orphans of finished runs; a failure here is logged, never fails the export."""
        try:
            removed = side.sweep(self.lake.filesystem(), leave_alone(context.step_context.instance, context.run_id))
        except Exception as error:  # noqa: BLE001 - the commit stands; the next run sweeps again
            context.log.warning(f"{name}: the orphan sweep failed ({type(error).__name__}): {error}")
            return 0
        if removed:
            context.log.info(f"{name}: removed {len(removed)} data file(s) of earlier runs that no commit lists")
        return len(removed)

    def _metadata(
        self,
        spec: ExportSpec,
        stream: ExportStream,
        schema: pa.Schema,
        location: str,
        files: list[DataFile],
        result: CommitResult,
        elapsed: float,
        removed: int,
    ) -> dict[str, Any]:
        written = sum(f.size for f in files)
        return {
            "dagster/row_count": MetadataValue.int(
                result.total_records if result.total_records is not None else stream.rows
            ),
            "snowflake_row_count": MetadataValue.int(stream.expected_rows)
            if stream.expected_rows is not None
            else MetadataValue.null(),
            "dagster/column_schema": MetadataValue.table_schema(
                column_schema(
                    (column.name, column.snowflake_type, str(field.type))
                    for column, field in zip(stream.columns, schema, strict=True)
                )
            ),
            "dagster/uri": MetadataValue.path(location),
            "file_type": MetadataValue.text(self.file_type),
            "metadata_location": MetadataValue.path(result.metadata_location),
            "commit_id": MetadataValue.text(result.commit_id),
            "files_added": MetadataValue.int(result.added_files),
            "bytes_added": MetadataValue.int(result.added_bytes),
            "rows_added": MetadataValue.int(result.added_records),
            # What this run wrote, for the check that the commit holds exactly these files.
            "data_files": MetadataValue.json([f.uri for f in files]),
            "orphans_removed": MetadataValue.int(removed),
            "format_options": MetadataValue.json(dict(spec.format_options)),
            "query": MetadataValue.md(f"```sql\n{stream.sql or spec.sql}\n```"),
            "snowflake_query_id": MetadataValue.text(stream.query_id or "unknown"),
            "elapsed_seconds": MetadataValue.float(elapsed),
            **throughput(stream.rows, written, elapsed),
        }

    def load_input(self, context: InputContext) -> Any:
        raise NotImplementedError(
            f"reading a {self.file_type} export as an asset's input is not built yet: read the table with "
            "its format's readers (DuckDB, Spark, Snowflake), from the materialization's metadata_location"
        )


def table_io_managers(
    lake: LakeAccess, progress_seconds: float = DEFAULT_INTERVAL_SECONDS
) -> dict[str, TableIOManager]:
    """The IO manager resources for the table formats, keyed as the assets ask for them."""
    return {
        io_manager_key(file_type): TableIOManager(lake=lake, file_type=file_type, progress_seconds=progress_seconds)
        for file_type in FORMAT_SIDES
    }
