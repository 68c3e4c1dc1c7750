"""Each table format's side of a table export (exports/tables.py): its write schema, how its
table is opened (created if missing) and committed to, its orphan sweep, and what its
materialization adds to the metadata; plus the rule that says whose data files the sweep leaves.

Iceberg goes through the catalog (exports/lake.py) under the export's (namespace, table); Delta
needs no catalog: the table is its folder. Both commit through tables/, which owns the commits'
safety rules; nothing here decides when a commit may be redone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import pyarrow as pa
import pyarrow.fs as pafs
from dagster import DagsterInstance, MetadataValue

from data_migration.config import ExportSpec
from data_migration.exports.lake import LakeAccess
from data_migration.tables import delta
from data_migration.tables.commit import Base, CommitResult, TableCommitError, TableWrite
from data_migration.tables.naming import DataFileName
from data_migration.tables.types import delta_write_schema, iceberg_write_schema

# A data file of a run the Dagster instance does not know (another instance's, or one whose
# history was deleted) is left alone this long after its run started: it may still commit.
UNKNOWN_RUN_GRACE = dt.timedelta(hours=1)
NOW = dt.timedelta(0)  # a finished run's files are orphans at once: nothing will commit them


def _iceberg() -> Any:
    """tables/iceberg.py, imported when an Iceberg export runs: pyiceberg takes half a second to
    import, which every command loading the definitions would pay otherwise."""
    from data_migration.tables import iceberg

    return iceberg


class FormatSide(Protocol):
    version_label: ClassVar[str]

    def __init__(self, lake: LakeAccess, spec: ExportSpec, location: str) -> None: ...
    def describe(self) -> str: ...
    def write_schema(self, schema: pa.Schema) -> pa.Schema: ...
    def open(self, schema: pa.Schema) -> Base: ...
    def commit(self, write: TableWrite) -> CommitResult: ...
    def sweep(self, filesystem: pafs.FileSystem, protect: Callable[[DataFileName], bool]) -> list[str]: ...
    def metadata(self, result: CommitResult) -> dict[str, Any]: ...


class IcebergSide:
    version_label: ClassVar[str] = "snapshot"

    def __init__(self, lake: LakeAccess, spec: ExportSpec, location: str) -> None:
        assert spec.iceberg_name is not None  # config/exports.py names every iceberg export
        self.lake, self.spec, self.location = lake, spec, location
        self.identifier = spec.iceberg_name
        self._catalog: Any = None

    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            self._catalog = self.lake.catalog()
        return self._catalog

    def describe(self) -> str:
        return f"{'.'.join(self.identifier)} at {self.location} ({self.lake.catalog_description()})"

    def write_schema(self, schema: pa.Schema) -> pa.Schema:
        return iceberg_write_schema(schema)

    def open(self, schema: pa.Schema) -> Base:
        table = _iceberg().ensure_table(self.catalog, self.identifier, self.location, schema)
        if table.location().rstrip("/") != self.location:
            raise TableCommitError(
                f"the catalog's {'.'.join(self.identifier)} is at {table.location()}, not at {self.location}: "
                "another export (or an earlier s3_path) owns that name; give this one `iceberg: {table: ...}`"
            )
        same_columns(".".join(self.identifier), [field.name for field in table.schema().fields], schema)
        return _iceberg().begin(self.catalog, self.identifier)

    def commit(self, write: TableWrite) -> CommitResult:
        return _iceberg().commit(self.catalog, self.identifier, write)

    def sweep(self, filesystem: pafs.FileSystem, protect: Callable[[DataFileName], bool]) -> list[str]:
        return _iceberg().sweep_orphans(self.catalog, self.identifier, filesystem, protect, min_age=NOW)

    def metadata(self, result: CommitResult) -> dict[str, Any]:
        found = {
            # Text: a snapshot id has 19 digits, more than the UI's numbers keep exactly.
            "snapshot_id": MetadataValue.text(str(result.version)),
            "iceberg_table": MetadataValue.text(".".join(self.identifier)),
            "iceberg_catalog": MetadataValue.text(self.lake.catalog_description()),
        }
        if self.lake.on_s3():
            # For a Snowflake Iceberg table over this table's files (an OBJECT_STORE catalog
            # integration, an external volume on the bucket's root, named as the export's table).
            statement = _iceberg().snowflake_refresh_statement(
                self.spec.object_name[-1].quoted(), result.metadata_location, self.lake.warehouse()
            )
            found["snowflake_refresh_sql"] = MetadataValue.text(statement)
        return found


class DeltaSide:
    version_label: ClassVar[str] = "version"

    def __init__(self, lake: LakeAccess, spec: ExportSpec, location: str) -> None:
        self.lake, self.spec, self.location = lake, spec, location
        self.options = lake.delta_options()

    def describe(self) -> str:
        return self.location

    def write_schema(self, schema: pa.Schema) -> pa.Schema:
        return delta_write_schema(schema)

    def open(self, schema: pa.Schema) -> Base:
        table = delta.ensure_table(self.location, schema, self.options)
        same_columns(self.location, [field.name for field in table.schema().fields], schema)
        return delta.begin(self.location, self.options)

    def commit(self, write: TableWrite) -> CommitResult:
        return delta.commit(self.location, write, self.options)

    def sweep(self, filesystem: pafs.FileSystem, protect: Callable[[DataFileName], bool]) -> list[str]:
        return delta.sweep_orphans(self.location, self.options, filesystem, protect, min_age=NOW)

    def metadata(self, result: CommitResult) -> dict[str, Any]:
        return {"table_version": MetadataValue.int(result.version)}


def same_columns(table: str, columns: list[str], schema: pa.Schema) -> None:
    """Refuse, before any data file is written, a query whose columns are not the table's: schema
    evolution is not built, and a table would otherwise take files lacking some of its columns
    (Iceberg reads them as NULLs)."""
    if columns == schema.names:
        return
    added = [name for name in schema.names if name not in columns]
    missing = [name for name in columns if name not in schema.names]
    change = "; ".join(
        part
        for part in (
            f"new: {', '.join(added)}" if added else "",
            f"gone: {', '.join(missing)}" if missing else "",
            "" if added or missing else "the same columns in another order",
        )
        if part
    )
    raise TableCommitError(
        f"{table} has the columns {', '.join(columns)}, and the query's differ ({change}); changing a table's "
        "columns is not built yet: give the export a new s3_path (and Iceberg name), or drop the table"
    )


FORMAT_SIDES: dict[str, type[IcebergSide] | type[DeltaSide]] = {"iceberg": IcebergSide, "delta": DeltaSide}


def leave_alone(instance: DagsterInstance, current_run_id: str) -> Callable[[DataFileName], bool]:
    """Whose data files the sweep keeps: this run's, those of runs the instance knows and that
    are not finished, and those of runs it does not know that started within UNKNOWN_RUN_GRACE."""
    finished: dict[str, bool | None] = {}
    cutoff = dt.datetime.now(dt.UTC) - UNKNOWN_RUN_GRACE

    def protect(name: DataFileName) -> bool:
        if name.run_id == current_run_id:
            return True
        if name.run_id not in finished:
            run = instance.get_run_by_id(name.run_id)
            finished[name.run_id] = None if run is None else run.is_finished
        state = finished[name.run_id]
        return name.started > cutoff if state is None else not state

    return protect
