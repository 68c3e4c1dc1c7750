"""Iceberg v2 tables through a pyiceberg catalog: create one, commit Parquet files this project
already wrote under its location (never rewriting them), read back the increment's mark, sweep
this project's orphan files, expire old snapshots, and the Snowflake statement that refreshes an
object-store Iceberg table after a commit.

What each write mode commits, in ONE catalog commit that adds exactly ONE snapshot:
- append: a fast append (`APPEND` snapshot) of the files;
- replace: an `OVERWRITE` snapshot that removes every live data file and adds the files (an
  `APPEND` snapshot when the table had none yet). pyiceberg's `Transaction.delete` plus
  `add_files` would make two snapshots (DELETE, then APPEND) in the one commit; this module uses
  the overwrite snapshot producer with explicit `delete_data_file` calls instead;
- replace_partition: the same `OVERWRITE` snapshot, removing only the files whose partition value
  (the spec's transform of `partition_value`) is the one replaced.
Every snapshot this module writes carries COMMIT_ID, WRITE_MODE, the write's properties and the
table's mark (the write's own, or the one before it, carried forward so that expiring old
snapshots never loses it).

Retries are this module's, not pyiceberg's: pyiceberg 0.12 retries a failed commit itself (table
property `commit.retry.num-retries`, default 4, `pyiceberg/table/__init__.py::commit_transaction`),
and its fast append skips every concurrency check, so a marked append would be redone on a moved
mark. `ensure_table` sets that property to 0, and `commit` refuses a table without it; each attempt
here reloads the table, looks for its COMMIT_ID (an earlier attempt whose answer was lost), and
runs `check_safe` against the run's base before building a fresh transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    CommitStateUnknownException,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions.literals import literal
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.manifest import DataFile
from pyiceberg.table import StaticTable, Table, TableProperties, Transaction
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, MonthTransform
from pyiceberg.types import DateType, TimestampType, TimestamptzType

from data_migration.config.names import parse_object_name
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
from data_migration.tables.naming import data_folder, split_uri
from data_migration.tables.sweep import LeaveAlone, sweep
from data_migration.tables.types import iceberg_write_schema

log = logging.getLogger(__name__)
TABLE_FORMAT = "iceberg"
NO_LIBRARY_RETRIES = {TableProperties.COMMIT_NUM_RETRIES: "0"}
_TRANSFORMS = {"identity": IdentityTransform, "hour": HourTransform, "day": DayTransform, "month": MonthTransform}
Identifier = str | tuple[str, ...]


@dataclass(frozen=True)
class IcebergPartition:
    """The table's one partition field: `transform` of `column`."""

    column: str
    transform: Literal["identity", "hour", "day", "month"] = "identity"


def ensure_table(
    catalog: Catalog,
    identifier: Identifier,
    location: str,
    arrow_schema: pa.Schema,
    partition: IcebergPartition | None = None,
    properties: dict[str, str] | None = None,
) -> Table:
    """The table at `identifier`, created at `location` (format version 2, schema from
    `arrow_schema` as types.iceberg_write_schema maps it, one partition field) if missing.
    An existing table is returned as it is, after turning pyiceberg's own commit retries off;
    TableCommitError if it is partitioned otherwise than `partition` says."""
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        try:
            table = _create(catalog, identifier, location, arrow_schema, partition, properties or {})
        except TableAlreadyExistsError:  # another run created it first
            table = catalog.load_table(identifier)
    if (found := partition_of(table)) != partition:
        raise TableCommitError(
            f"{_name(identifier)} is partitioned by {found}, not by {partition}: fix the export's spec"
        )
    if table.properties.get(TableProperties.COMMIT_NUM_RETRIES) != "0":
        with table.transaction() as tx:
            tx.set_properties(NO_LIBRARY_RETRIES)
        table = catalog.load_table(identifier)
    return table


def partition_of(table: Table) -> IcebergPartition | None:
    """The table's partition field as this module describes one (None when unpartitioned)."""
    fields = table.spec().fields
    if not fields:
        return None
    if len(fields) > 1:
        raise TableCommitError(f"{_name(table.name())}: this module commits to tables with at most one partition field")
    column = table.schema().find_field(fields[0].source_id).name
    return IcebergPartition(column, str(fields[0].transform))  # type: ignore[arg-type]


def _create(
    catalog: Catalog,
    identifier: Identifier,
    location: str,
    arrow_schema: pa.Schema,
    partition: IcebergPartition | None,
    properties: dict[str, str],
) -> Table:
    schema = iceberg_write_schema(arrow_schema)
    namespace = Catalog.namespace_from(identifier)
    catalog.create_namespace_if_not_exists(namespace)
    tx = catalog.create_table_transaction(
        identifier,
        schema=schema,
        location=location.rstrip("/"),
        properties={**properties, **NO_LIBRARY_RETRIES, "format-version": "2"},
    )
    if partition is not None:
        if partition.column not in schema.names:
            raise ValueError(f"partition column {partition.column!r} is not in the schema ({', '.join(schema.names)})")
        with tx.update_spec() as spec:
            name = (
                partition.column if partition.transform == "identity" else f"{partition.column}_{partition.transform}"
            )
            spec.add_field(partition.column, _TRANSFORMS[partition.transform](), name)
    tx.commit_transaction()
    return catalog.load_table(identifier)


def begin(catalog: Catalog, identifier: Identifier) -> Base:
    """The table as a run finds it: its current snapshot id and mark."""
    return _base(catalog.load_table(identifier))


def read_mark(catalog: Catalog, identifier: Identifier, snapshot_id: int | None = None) -> str | None:
    """The mark of the current snapshot (or `snapshot_id`): the latest one its lineage carries."""
    table = catalog.load_table(identifier)
    return _mark(table, snapshot_id if snapshot_id is not None else _current_id(table))


def commit(
    catalog: Catalog, identifier: Identifier, write: TableWrite, commit_id: str | None = None, retries: int = RETRIES
) -> CommitResult:
    """Commit `write` in one transaction that adds exactly one snapshot, whatever the mode:
    append one APPEND snapshot; replace and replace_partition one OVERWRITE snapshot (APPEND on a
    table without one) that removes the replaced files and adds the new ones. A caller that lost
    the answer to an earlier call passes its `commit_id` again: if that commit landed, its result
    comes back and nothing is committed twice."""
    commit_id = commit_id or new_commit_id()
    name = _name(identifier)
    first = catalog.load_table(identifier)
    if first.properties.get(TableProperties.COMMIT_NUM_RETRIES) != "0":
        raise TableCommitError(
            f"{name}: pyiceberg would retry commits itself without this module's checks; open the table with "
            f"ensure_table (it sets {TableProperties.COMMIT_NUM_RETRIES}=0)"
        )
    base = write.base or _base(first)

    def attempt(number: int) -> CommitResult:
        table = first if number == 1 else catalog.load_table(identifier)
        if (landed := _find_commit(table, commit_id)) is not None:
            log.info(f"{name}: commit {commit_id} is already snapshot {landed.snapshot_id}; not committing again")
            return _result(table, landed, (), number, commit_id)
        now = _base(table)
        key = _partition_key(table, write.partition_value) if write.mode is WriteMode.REPLACE_PARTITION else None
        check_safe(
            name, write, base, now, lambda version: frozenset(f.file_path for f in _replaced(table, version, key))
        )
        skipped = _commit_once(table, write, key, now, commit_id)
        table = catalog.load_table(identifier)
        landed = _find_commit(table, commit_id)
        if landed is None:
            raise TableCommitError(f"{name}: the catalog accepted commit {commit_id}, but no snapshot carries it")
        return _result(table, landed, skipped, number, commit_id)

    return with_retries(name, attempt, _lost_race, retries)


def _commit_once(table: Table, write: TableWrite, key: object, now: Base, commit_id: str) -> tuple[str, ...]:
    tx = table.transaction()
    if tx.table_metadata.name_mapping() is None:
        # Our files carry no Iceberg field ids: readers resolve their columns by name (as add_files does).
        tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: table.schema().name_mapping.model_dump_json()})
    files = [_data_file(table, tx, path, key, write.mode) for path in write.files]
    live = {f.file_path for f in _data_files(table, now.version)}
    if doubled := sorted(f.file_path for f in files if f.file_path in live):
        raise DataFileError(f"{_name(table.name())}: already in the table, not added twice: {', '.join(doubled)}")
    added = [f for f in files if f.record_count > 0]
    properties = summary_properties(write, commit_id)
    if MARK not in properties and now.mark is not None:
        properties[MARK] = now.mark  # carried forward: expiring older snapshots never loses the mark
    snapshot = tx.update_snapshot(snapshot_properties=properties)
    producer = snapshot.fast_append() if write.mode is WriteMode.APPEND else snapshot.overwrite()
    with producer:
        if write.mode is not WriteMode.APPEND:
            for old in _replaced(table, now.version, key):
                producer.delete_data_file(old)
        for data_file in added:
            producer.append_data_file(data_file)
    tx.commit_transaction()
    return tuple(f.file_path for f in files if f.record_count == 0)


def _data_file(table: Table, tx: Transaction, path: str, key: object, mode: WriteMode) -> DataFile:
    try:
        data_file = parquet_file_to_data_file(table.io, tx.table_metadata, path)
    except FileNotFoundError as error:
        raise DataFileError(f"{_name(table.name())}: data file {path} does not exist") from error
    except (ValueError, TypeError) as error:
        raise DataFileError(f"{_name(table.name())}: data file {path} cannot be added: {error}") from error
    if key is not None and data_file.record_count and data_file.partition[0] != key:
        raise DataFileError(
            f"{_name(table.name())}: {path} holds partition value {data_file.partition[0]!r}, not the replaced "
            f"partition's {key!r}; {mode} commits only files inside the partition it replaces"
        )
    return data_file


def _lost_race(error: BaseException) -> bool:
    return isinstance(error, CommitFailedException | CommitStateUnknownException)


def _result(table: Table, snapshot: Snapshot, skipped: tuple[str, ...], attempts: int, commit_id: str) -> CommitResult:
    summary = snapshot.summary
    total = summary.get("total-records") if summary else None
    return CommitResult(
        table_format=TABLE_FORMAT,
        version=snapshot.snapshot_id,
        metadata_location=_metadata_location_of(table, snapshot),
        # pyiceberg's Summary.get ignores a default: a snapshot that added nothing has no such key.
        added_files=int(summary.get("added-data-files") or 0) if summary else 0,
        added_bytes=int(summary.get("added-files-size") or 0) if summary else 0,
        added_records=int(summary.get("added-records") or 0) if summary else 0,
        total_records=int(total) if total is not None else None,
        skipped_empty=skipped,
        attempts=attempts,
        commit_id=commit_id,
    )


def _metadata_location_of(table: Table, snapshot: Snapshot) -> str:
    """The metadata.json that made `snapshot` current: the table's own when it still is, else the
    first of the metadata log written after the snapshot."""
    if _current_id(table) == snapshot.snapshot_id:
        return table.metadata_location
    later = [e.metadata_file for e in table.metadata.metadata_log if e.timestamp_ms >= snapshot.timestamp_ms]
    return later[0] if later else table.metadata_location


def _base(table: Table) -> Base:
    current = _current_id(table)
    return Base(current, _mark(table, current))


def _current_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def _lineage(table: Table, snapshot_id: int | None) -> Iterable[Snapshot]:
    while snapshot_id is not None and (snapshot := table.metadata.snapshot_by_id(snapshot_id)) is not None:
        yield snapshot
        snapshot_id = snapshot.parent_snapshot_id


def _mark(table: Table, snapshot_id: int | None) -> str | None:
    for snapshot in _lineage(table, snapshot_id):
        if snapshot.summary is not None and (mark := snapshot.summary.get(MARK)) is not None:
            return mark
    return None


def _find_commit(table: Table, commit_id: str) -> Snapshot | None:
    for snapshot in table.metadata.snapshots:
        if snapshot.summary is not None and snapshot.summary.get(COMMIT_ID) == commit_id:
            return snapshot
    return None


def _data_files(table: Table, snapshot_id: int | None) -> list[DataFile]:
    snapshot = table.metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    if snapshot is None:
        return []
    return [
        entry.data_file
        for manifest in snapshot.manifests(table.io)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
    ]


def _replaced(table: Table, snapshot_id: int | None, key: object) -> list[DataFile]:
    """The live data files a replace (key None) or a replace_partition of `key` removes."""
    files = _data_files(table, snapshot_id)
    return files if key is None else [f for f in files if f.partition[0] == key]


def _partition_key(table: Table, value: object) -> object:
    """The partition record value (the spec's transform of `value`) of the partition replaced."""
    spec = table.spec()
    if len(spec.fields) != 1:
        raise TableCommitError(f"{_name(table.name())}: replace_partition needs a table with one partition field")
    field = spec.fields[0]
    source_type = table.schema().find_field(field.source_id).field_type
    if isinstance(source_type, TimestampType | TimestamptzType) and not isinstance(value, dt.datetime):
        if not isinstance(value, dt.date):
            raise TypeError(f"partition_value {value!r}: expected a date or datetime for {source_type}")
        value = dt.datetime.combine(value, dt.time(), dt.UTC if isinstance(source_type, TimestamptzType) else None)
    if isinstance(source_type, DateType) and isinstance(value, dt.datetime):
        value = value.date()
    return field.transform.transform(source_type)(literal(value).to(source_type).value)  # type: ignore[arg-type]


def _name(identifier: Identifier) -> str:
    return identifier if isinstance(identifier, str) else ".".join(identifier)


def listed_files(table: Table) -> frozenset[str]:
    """Every data file any snapshot the metadata still holds lists (each manifest read once)."""
    seen: set[str] = set()
    listed: set[str] = set()
    for snapshot in table.metadata.snapshots:
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            listed.update(e.data_file.file_path for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True))
    return frozenset(listed)


def sweep_orphans(
    catalog: Catalog,
    identifier: Identifier,
    filesystem: pafs.FileSystem,
    leave_alone: LeaveAlone,
    min_age: dt.timedelta = dt.timedelta(hours=1),
) -> list[str]:
    """Delete the files under `<location>/data/` that this project named (naming.py), that no
    snapshot lists, whose run `leave_alone` does not protect (a set of run ids, or a predicate on
    the parsed name) and whose run started over `min_age` ago. Returns the URIs deleted.
    The folder is listed before the metadata is read, so a file committed meanwhile is listed."""
    table = catalog.load_table(identifier)
    return sweep(
        data_folder(table.location()),
        filesystem,
        lambda: listed_files(catalog.load_table(identifier)),
        leave_alone,
        min_age,
    )


def expire_snapshots(catalog: Catalog, identifier: Identifier, keep: int) -> list[int]:
    """Expire every snapshot but the `keep` newest of the current lineage (branch and tag heads
    are never expired). pyiceberg 0.12's ExpireSnapshots removes metadata only: the data files
    no snapshot lists any more are left for sweep_orphans. Returns the ids expired."""
    if keep < 1:
        raise ValueError("keep at least the current snapshot (keep >= 1)")
    table = catalog.load_table(identifier)
    kept = {s.snapshot_id for s in list(_lineage(table, _current_id(table)))[:keep]}
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    expired = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id not in kept | protected]
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
    return expired


def snapshot_files(
    metadata_location: str, io_properties: dict[str, str], snapshot_id: int
) -> tuple[frozenset[str], int | None]:
    """The data files snapshot `snapshot_id` of the table at `metadata_location` reads, and its
    row count (the summary's total-records), read from the metadata file alone: no catalog."""
    table = StaticTable.from_metadata(metadata_location, properties=io_properties)
    snapshot = table.metadata.snapshot_by_id(snapshot_id)
    if snapshot is None:
        raise TableCommitError(f"{metadata_location} holds no snapshot {snapshot_id}")
    total = snapshot.summary.get("total-records") if snapshot.summary else None
    files = frozenset(f.file_path for f in _data_files(table, snapshot_id))
    return files, int(total) if total is not None else None


def snowflake_refresh_statement(table_name: str, metadata_location: str, volume_location: str) -> str:
    """`ALTER ICEBERG TABLE <name> REFRESH '<metadata file relative path>'` for a Snowflake table
    created from Iceberg files in object storage (OBJECT_STORE catalog integration). The path is
    relative to the active storage location of the table's external volume (`volume_location`,
    the volume's STORAGE_BASE_URL), without a leading slash, per
    https://docs.snowflake.com/en/sql-reference/sql/alter-iceberg-table-refresh
    (for a Glue-catalogued table Snowflake wants no path: use plain `REFRESH`)."""
    quoted = ".".join(part.quoted() for part in parse_object_name(table_name))
    root = volume_location.rstrip("/") + "/"
    if split_uri(metadata_location)[0] != split_uri(root)[0] or not metadata_location.startswith(root):
        raise ValueError(f"{metadata_location} is not under the external volume's location {root}")
    relative = metadata_location[len(root) :].lstrip("/")
    return f"ALTER ICEBERG TABLE {quoted} REFRESH '{relative.replace(chr(39), chr(39) * 2)}'"


__all__ = [
    "IcebergPartition",
    "begin",
    "commit",
    "ensure_table",
    "expire_snapshots",
    "listed_files",
    "partition_of",
    "read_mark",
    "snapshot_files",
    "snowflake_refresh_statement",
    "sweep_orphans",
]
