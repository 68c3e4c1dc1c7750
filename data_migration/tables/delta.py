"""Delta tables through deltalake (delta-rs 1.6.6): create one, commit Parquet files this project
already wrote under its location as add actions with stats from each file's footer, read back
the increment's mark, and sweep this project's orphan files.

Each write is ONE transaction (`DeltaTable.create_write_transaction`, mode "append", which is
the only mode that takes explicit remove actions), so ONE new table version:
- append: add actions for the files;
- replace: a remove action for every live file plus the add actions;
- replace_partition: remove actions for the live files whose partition value is
  `partition_value`, plus the add actions (each file must hold that value).
The commit info records `operation: WRITE, mode: Append` for all three (delta-rs writes that
for this API); what the commit did is in its remove and add actions and in our WRITE_MODE key.
COMMIT_ID, WRITE_MODE, the write's properties and the table's mark (its own, or carried forward)
go into the commit info as custom metadata (`CommitProperties(custom_metadata=...)`).

Retries are this module's: delta-rs's own (`max_commit_retries`, default 15) rebase a commit on
the newer version with their own conflict rules, which know nothing of the mark or of the run's
base, so each commit passes `max_commit_retries=0` and a lost race surfaces as CommitFailedError.
Each attempt reloads the table, looks for its COMMIT_ID in the history since the base (an
earlier attempt whose answer was lost), and runs `check_safe` first.

Object store: delta-rs 1.6 commits a version by writing `_delta_log/<version>.json` with
`If-None-Match: *` (a conditional put) and needs nothing else on S3: no DynamoDB lock (removed
in 1.6.1), no `AWS_S3_ALLOW_UNSAFE_RENAME`. A store must refuse a second put of the same key
(412; AWS S3 since late 2024, moto 5.2.5). Measured on moto: a writer whose snapshot is stale
lists the log before it puts, finds the newer version and fails with CommitFailedError without
any put; the conditional put is what guards the window between that listing and the put.
`s3_storage_options` builds the options for an endpoint such as moto's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction, RemoveAction

from data_migration.tables.commit import (
    COMMIT_ID,
    MARK,
    RETRIES,
    Base,
    CommitResult,
    DataFileError,
    TableCommitError,
    TableWrite,
    WriteMode,
    check_safe,
    new_commit_id,
    summary_properties,
    with_retries,
)
from data_migration.tables.naming import DATA_FOLDER
from data_migration.tables.sweep import LeaveAlone, sweep
from data_migration.tables.types import delta_write_schema

log = logging.getLogger(__name__)
TABLE_FORMAT = "delta"
LOG_FOLDER = "_delta_log"
Options = dict[str, str]
_PARTITION_TYPES = (
    pa.types.is_date32,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_boolean,
)


def s3_storage_options(
    region: str,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> Options:
    """deltalake's storage_options for S3, or an S3-compatible endpoint (plain http allowed only
    when the endpoint is http). Without keys, delta-rs finds credentials as the AWS SDK does.
    The keys are object_store's lower-case names (delta-rs reads AWS_ENDPOINT_URL and the like
    case-insensitively): these are options passed to the library, not environment variables."""
    options = {"aws_region": region}
    if endpoint_url:
        options["aws_endpoint_url"] = endpoint_url
        if endpoint_url.startswith("http://"):
            options["aws_allow_http"] = "true"
    if access_key_id and secret_access_key:
        options |= {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
    return options


def ensure_table(
    uri: str,
    arrow_schema: pa.Schema,
    storage_options: Options,
    partition_by: str | None = None,
    configuration: dict[str, str | None] | None = None,
) -> DeltaTable:
    """The Delta table at `uri`, created (version 0, schema from `arrow_schema` as
    types.delta_write_schema maps it, Hive-style partitions by one column) if missing;
    TableCommitError if an existing one is partitioned otherwise."""
    try:
        table = DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        pass
    else:
        if (found := table.metadata().partition_columns) != ([partition_by] if partition_by else []):
            raise TableCommitError(f"{uri} is partitioned by {found}, not by {partition_by!r}: fix the export's spec")
        return table
    schema = delta_write_schema(arrow_schema)
    if partition_by is not None:
        if partition_by not in schema.names:
            raise ValueError(f"partition column {partition_by!r} is not in the schema ({', '.join(schema.names)})")
        if not any(accepts(schema.field(partition_by).type) for accepts in _PARTITION_TYPES):
            kind = schema.field(partition_by).type
            raise ValueError(f"partition column {partition_by!r} ({kind}): use a date, text, integer or boolean")
    return DeltaTable.create(
        uri,
        schema=schema,
        mode="ignore",  # another run may create it first
        partition_by=[partition_by] if partition_by else None,
        configuration=configuration,
        storage_options=storage_options,
    )


def begin(uri: str, storage_options: Options) -> Base:
    """The table as a run finds it: its version and mark."""
    return _base(DeltaTable(uri, storage_options=storage_options))


def read_mark(uri: str, storage_options: Options, version: int | None = None) -> str | None:
    """The mark as of the current version (or `version`): the latest a commit up to it carries."""
    table = DeltaTable(uri, storage_options=storage_options)
    return _mark(table.history(), version if version is not None else table.version())


def commit(
    uri: str, write: TableWrite, storage_options: Options, commit_id: str | None = None, retries: int = RETRIES
) -> CommitResult:
    """Commit `write` as one new version (see the module docstring). A caller that lost the
    answer to an earlier call passes its `commit_id` again: if that commit landed, its result
    comes back and nothing is committed twice."""
    commit_id = commit_id or new_commit_id()
    root = uri.rstrip("/")
    files = pafs.PyFileSystem(DeltaStorageHandler(root, storage_options))
    first = DeltaTable(root, storage_options=storage_options)
    base = write.base or _base(first)
    partition_column = _partition_column(first)
    columns = pa.schema(first.schema().to_arrow()).names
    adds = [_add_action(root, files, path, partition_column, columns, write) for path in write.files]

    def attempt(number: int) -> CommitResult:
        table = first if number == 1 else DeltaTable(root, storage_options=storage_options)
        # The commit can only be in a version after the run's base; without one, all are read.
        since = write.base.version if write.base is not None else None
        history = table.history(None if since is None else max(1, table.version() - since + 1))
        if (landed := _find_commit(history, commit_id)) is not None:
            log.info(f"{root}: commit {commit_id} is already version {landed}; not committing again")
            return _result(root, storage_options, files, landed, (), number, commit_id)
        now = Base(table.version(), _mark(history, table.version(), base))
        value = _partition_text(write.partition_value) if write.mode is WriteMode.REPLACE_PARTITION else None
        check_safe(root, write, base, now, lambda v: frozenset(_replaced(root, storage_options, table, v, value)))
        live = {a["path"] for a in _add_actions(table)}
        if doubled := sorted(a.path for a in adds if a.path in live):
            raise DataFileError(f"{root}: already in the table, not added twice: {', '.join(doubled)}")
        removes = [] if write.mode is WriteMode.APPEND else _removes(table, value)
        properties: dict[str, Any] = summary_properties(write, commit_id)
        if MARK not in properties and now.mark is not None:
            properties[MARK] = now.mark  # carried forward, as Iceberg's summaries carry it
        table.create_write_transaction(
            [*removes, *(a for a in adds if _records(a) > 0)],
            "append",
            table.schema(),
            partition_by=[partition_column] if partition_column else None,
            commit_properties=CommitProperties(custom_metadata=properties, max_commit_retries=0),
        )
        table = DeltaTable(root, storage_options=storage_options)
        landed = _find_commit(table.history(max(1, table.version() - (now.version or 0))), commit_id)
        if landed is None:
            raise TableCommitError(f"{root}: delta-rs accepted commit {commit_id}, but no version carries it")
        skipped = tuple(f"{root}/{a.path}" for a in adds if _records(a) == 0)
        return _result(root, storage_options, files, landed, skipped, number, commit_id)

    return with_retries(root, attempt, lambda error: isinstance(error, CommitFailedError), retries)


def _partition_column(table: DeltaTable) -> str | None:
    columns = table.metadata().partition_columns
    if len(columns) > 1:
        raise TableCommitError(f"{table.table_uri}: this module commits to tables with at most one partition column")
    return columns[0] if columns else None


def _add_action(
    root: str, files: pafs.FileSystem, uri: str, column: str | None, columns: list[str], write: TableWrite
) -> AddAction:
    if not uri.startswith(root + "/"):
        raise DataFileError(f"{root}: data file {uri} is not under the table's location")
    path = uri[len(root) + 1 :]
    try:
        size = files.get_file_info([path])[0].size
        metadata = pq.read_metadata(files.open_input_file(path))
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as error:
        raise DataFileError(f"{root}: data file {uri} cannot be read as Parquet: {error}") from error
    if size is None:
        raise DataFileError(f"{root}: data file {uri} does not exist")
    names = metadata.schema.to_arrow_schema().names
    if sorted(set(names) | {column} - {None}) != sorted(columns) or len(set(names)) != len(names):
        raise DataFileError(f"{root}: {uri} has columns {names}, the table {columns}")
    stats, value = _footer_stats(metadata, column, uri, root)
    replaced = _partition_text(write.partition_value)
    if write.mode is WriteMode.REPLACE_PARTITION and metadata.num_rows and value != replaced:
        raise DataFileError(
            f"{root}: {uri} holds partition value {value!r}, not the replaced partition's "
            f"{replaced!r}; replace_partition commits only files inside that partition"
        )
    partition_values = {column: value} if column else {}
    return AddAction(path, size, partition_values, int(time.time() * 1000), True, json.dumps(stats))


def _footer_stats(metadata: pq.FileMetaData, column: str | None, uri: str, root: str) -> tuple[dict, str | None]:
    """Delta `stats` (numRecords; nullCount where every row group has it) and the file's one
    partition value: from the partition column's min and max when the file holds the column,
    else from its `<column>=<value>` folder."""
    names = metadata.schema.to_arrow_schema().names
    null_count: dict[str, int] = {}
    partition_values: set[str | None] = set()
    for index, name in enumerate(names):
        chunks = [metadata.row_group(g).column(index).statistics for g in range(metadata.num_row_groups)]
        if name == column:
            for s in chunks:
                if s is None or not s.has_min_max:
                    partition_values.add(None if s is not None and s.null_count == s.num_values else "?")
                    continue
                partition_values |= {_partition_text(s.min), _partition_text(s.max)}
                if s.null_count:
                    partition_values.add(None)
        elif chunks and all(s is not None and s.has_null_count for s in chunks):
            null_count[name] = sum(s.null_count for s in chunks)
    stats = {"numRecords": metadata.num_rows, "nullCount": null_count}
    if column is None:
        return stats, None
    if column not in names:
        folder = posixpath.basename(posixpath.dirname(uri))
        prefix = f"{column}="
        if not folder.startswith(prefix):
            raise DataFileError(f"{root}: {uri} has no column {column!r} and no {prefix}<value> folder")
        return stats, urllib.parse.unquote(folder[len(prefix) :])
    if len(partition_values) != 1 or "?" in partition_values:
        if metadata.num_rows == 0:
            return stats, None
        raise DataFileError(f"{root}: {uri} holds several values of partition column {column!r} (one per file)")
    return stats, next(iter(partition_values))


def _records(action: AddAction) -> int:
    return int(json.loads(action.stats)["numRecords"])


def _partition_text(value: object) -> str | None:
    """A partition value as Delta's partitionValues spell it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.datetime):
        raise TypeError(f"partition_value {value!r}: Delta partitions here are by a date, text, integer or boolean")
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _add_actions(table: DeltaTable) -> list[dict[str, Any]]:
    return pa.table(table.get_add_actions(flatten=True)).to_pylist()


def _replaced(root: str, options: Options, now: DeltaTable, version: int | None, value: str | None) -> list[str]:
    """The live files (relative paths) at `version` that a replace (value None) or a
    replace_partition of `value` removes."""
    if version is None:
        return []
    table = now if version == now.version() else DeltaTable(root, version=version, storage_options=options)
    return [a["path"] for a in _selected(table, value)]


def _selected(table: DeltaTable, value: str | None) -> list[dict[str, Any]]:
    actions = _add_actions(table)
    if value is None:
        return actions
    column = f"partition.{_partition_column(table)}"
    return [a for a in actions if _partition_text(a.get(column)) == value]


def _removes(table: DeltaTable, value: str | None) -> list[RemoveAction]:
    column = _partition_column(table)
    now_ms = int(time.time() * 1000)
    return [
        RemoveAction(
            a["path"],
            True,
            now_ms,
            a["size_bytes"],
            {column: _partition_text(a[f"partition.{column}"])} if column else {},
        )
        for a in _selected(table, value)
    ]


def _base(table: DeltaTable) -> Base:
    return Base(table.version(), _mark(table.history(), table.version()))


def _mark(history: Iterable[dict[str, Any]], version: int, base: Base | None = None) -> str | None:
    """The latest mark up to `version` in `history` (newest first); when `history` covers only
    the versions after `base`, and none of them carries a mark, the mark is still the base's."""
    for entry in history:
        if entry["version"] <= version and MARK in entry:
            return str(entry[MARK])
    return base.mark if base is not None else None


def _find_commit(history: Iterable[dict[str, Any]], commit_id: str) -> int | None:
    for entry in history:
        if entry.get(COMMIT_ID) == commit_id:
            return int(entry["version"])
    return None


def _log_actions(files: pafs.FileSystem, version: int) -> list[dict[str, Any]]:
    with files.open_input_stream(f"{LOG_FOLDER}/{version:020d}.json") as stream:
        return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


def _result(
    root: str,
    options: Options,
    files: pafs.FileSystem,
    version: int,
    skipped: tuple[str, ...],
    attempts: int,
    commit_id: str,
) -> CommitResult:
    added = [a["add"] for a in _log_actions(files, version) if "add" in a]
    records = [json.loads(a["stats"]).get("numRecords") if a.get("stats") else None for a in added]
    totals = [a["num_records"] for a in _add_actions(DeltaTable(root, version=version, storage_options=options))]
    return CommitResult(
        table_format=TABLE_FORMAT,
        version=version,
        metadata_location=f"{root}/{LOG_FOLDER}/{version:020d}.json",
        added_files=len(added),
        added_bytes=sum(int(a["size"]) for a in added),
        added_records=sum(r or 0 for r in records),
        total_records=None if any(t is None for t in totals) else sum(totals),
        skipped_empty=skipped,
        attempts=attempts,
        commit_id=commit_id,
    )


def listed_files(uri: str, storage_options: Options) -> frozenset[str]:
    """Every data file a version still in the log lists: the current files, and each file an
    add action of a log entry not yet cleaned up names (older versions read those)."""
    root = uri.rstrip("/")
    table = DeltaTable(root, storage_options=storage_options)
    files = pafs.PyFileSystem(DeltaStorageHandler(root, storage_options))
    # delta-rs gives a local table's files as plain paths (/x/t/data/f.parquet), not as the
    # table's own file:// URIs; the sweep compares URIs, so each is named from the table's root.
    listed = {f"{root}/{urllib.parse.unquote(a['path'])}" for a in _add_actions(table)}
    for info in files.get_file_info(pafs.FileSelector(LOG_FOLDER, allow_not_found=True)):
        name = posixpath.basename(info.path)
        if name.endswith(".json") and name[:-5].isdigit():
            for action in _log_actions(files, int(name[:-5])):
                if "add" in action:
                    listed.add(f"{root}/{urllib.parse.unquote(action['add']['path'])}")
    return frozenset(listed)


def sweep_orphans(
    uri: str,
    storage_options: Options,
    filesystem: pafs.FileSystem,
    leave_alone: LeaveAlone,
    min_age: dt.timedelta = dt.timedelta(hours=1),
) -> list[str]:
    """Delete the files under `<uri>/data/` that this project named, that no version still in the
    log lists, whose run `leave_alone` does not protect and that are over `min_age` old (the
    rules in sweep.py). `filesystem` is a pyarrow filesystem over the same store. Files removed
    from the table but still read by older versions stay until their log entries are cleaned up
    (delta.logRetentionDuration); deltalake's own `vacuum` removes delta-rs's files, not ours."""
    root = uri.rstrip("/")
    return sweep(f"{root}/{DATA_FOLDER}", filesystem, lambda: listed_files(root, storage_options), leave_alone, min_age)


def version_files(uri: str, storage_options: Options, version: int) -> tuple[frozenset[str], int | None]:
    """The data files (URIs under `uri`) the table's `version` reads, and their rows (None where
    an add action has no row count)."""
    root = uri.rstrip("/")
    actions = _add_actions(DeltaTable(root, version=version, storage_options=storage_options))
    counts = [a.get("num_records") for a in actions]
    rows = None if any(c is None for c in counts) else sum(int(c) for c in counts)
    return frozenset(f"{root}/{urllib.parse.unquote(a['path'])}" for a in actions), rows


__all__ = [
    "begin",
    "commit",
    "ensure_table",
    "listed_files",
    "read_mark",
    "s3_storage_options",
    "sweep_orphans",
    "version_files",
]
