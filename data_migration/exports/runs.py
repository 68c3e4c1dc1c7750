"""What an export asset hands its IO manager for the runs that are more than one query: a range
of partitions, an increment, an unload. Each holds callables that run the export's SQL through
snowflake/queries.py when the IO manager gets to it, so one connection serves the whole run.
Every run goes with its typed spec (`FileExport`, `TableExport`): where and how the IO manager
writes comes from the list the code location built, never from the asset's metadata, which is
for people (a component's post_processing or a translator may change it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from data_migration.config import ExportSpec
from data_migration.config.cursors import CursorValue, CursorWindow, IncrementSpec
from data_migration.config.windows import Window
from data_migration.snowflake.queries import Column, ExportStream


@dataclass
class PartitionedExport:
    """The partitions one run exports, in order. Each partition's query runs only when the IO
    manager reaches it (`open`), so one stream is open at a time; `record` attaches metadata to
    that partition's materialization."""

    windows: list[Window]
    open: Callable[[Window], ExportStream]
    record: Callable[[str, Mapping[str, Any]], None]
    close: Callable[[], None] = lambda: None  # after the last partition, or a failure


@dataclass
class IncrementalExport:
    """One run of an incremental export. The IO manager reads the committed mark, then asks for
    the upper bound (`upper`: MAX(cursor), read before any row), then opens the stream of the
    window it planned (`open`), all on one connection, closed by `close`."""

    spec: IncrementSpec
    full_refresh: bool
    upper: Callable[[], CursorValue | None]
    open: Callable[[CursorWindow], ExportStream]
    close: Callable[[], None] = lambda: None


@dataclass
class UnloadExport:
    """One run of an unloaded export (exports/unload.py). The IO manager asks for the query's columns
    (`describe`, compiled by Snowflake, nothing run), builds the COPY statement, and runs it
    (`run`: its query id and output rows); no row of the result reaches this process."""

    stage: str
    describe: Callable[[], list[Column]]
    run: Callable[[str], tuple[str | None, list[tuple]]]
    close: Callable[[], None] = lambda: None


@dataclass
class TableExport:
    """One run of an export to an open table format (file_type iceberg or delta): the typed
    spec, which says where the table is and its name in the catalog, and the stream of the
    query's rows, already open. The table IO manager (exports/tables.py) writes and commits it."""

    spec: ExportSpec
    stream: ExportStream


@dataclass
class FileExport:
    """One run of an export to files (parquet, csv, json) with its typed spec: the IO manager
    (exports/io_managers.py) writes `run` where and as `spec` says (s3_path, split, gzip, format
    options, SQL, preview)."""

    spec: ExportSpec
    run: ExportStream | PartitionedExport | IncrementalExport | UnloadExport | Any  # Any: a ConditionalExport
