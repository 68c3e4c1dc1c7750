"""Iceberg commits (data_migration/tables/iceberg.py) through pyiceberg's SqlCatalog on SQLite,
with the table and its files in moto: what each mode leaves (rows, snapshots, files), races,
lost answers, the orphan sweep and the Snowflake REFRESH text. Read back with pyiceberg's scan
and, independently of the metadata's readers, with pyarrow.dataset over the files it lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitStateUnknownException

from data_migration.tables import iceberg
from data_migration.tables.commit import (
    COMMIT_ID,
    MARK,
    ConcurrentCommitError,
    DataFileError,
    TableCommitError,
    TableWrite,
    WriteMode,
)
from data_migration_tests.tables.conftest import Store, data_file, iceberg_catalog

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("day", pa.date32()), pa.field("name", pa.string())])
D1, D2 = dt.date(2026, 11, 23), dt.date(2026, 11, 24)
IDENT = "sales.orders"


def rows(ids: list[int], day: dt.date = D1) -> pa.Table:
    return pa.table({"id": ids, "day": [day] * len(ids), "name": [f"n{i}" for i in ids]}, schema=SCHEMA)


def scan_ids(table: Any, snapshot_id: int | None = None) -> list[int]:
    return sorted(table.scan(snapshot_id=snapshot_id).to_arrow().column("id").to_pylist())


def dataset_ids(store: Store, table: Any) -> list[int]:
    """The rows of the files the current snapshot lists, read by pyarrow alone."""
    files = [task.file.file_path.removeprefix("s3://") for task in table.scan().plan_files()]
    return sorted(ds.dataset(files, format="parquet", filesystem=store.fs).to_table().column("id").to_pylist())


@pytest.fixture
def location(store: Store) -> str:
    return f"{store.root}/lake/orders"


@pytest.fixture
def catalog(tmp_path: Path, store: Store) -> SqlCatalog:
    return iceberg_catalog(tmp_path, store)


class RacingCatalog(SqlCatalog):
    """A SqlCatalog whose next commit first lets `before_next_commit` run (another writer
    committing in between this writer's refresh and its commit), or whose answer is lost."""

    before_next_commit: Any = None
    lose_next_answer: type[BaseException] | None = None

    def commit_table(self, table: Any, requirements: Any, updates: Any) -> Any:
        if (hook := self.before_next_commit) is not None:
            self.before_next_commit = None
            hook()
        response = super().commit_table(table, requirements, updates)
        if (lost := self.lose_next_answer) is not None:
            self.lose_next_answer = None
            raise lost("the answer to this commit was lost")
        return response


@pytest.fixture
def racing(tmp_path: Path, store: Store) -> RacingCatalog:
    return iceberg_catalog(tmp_path, store, RacingCatalog)


def test_replace_twice_leaves_the_last_rows_in_one_snapshot_each(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    first = iceberg.commit(
        catalog,
        IDENT,
        TableWrite(
            WriteMode.REPLACE,
            (data_file(store, location, rows([1, 2, 3])), data_file(store, location, rows([4]), number=1)),
        ),
    )
    second = iceberg.commit(
        catalog, IDENT, TableWrite(WriteMode.REPLACE, (data_file(store, location, rows([10, 11]), run_id="run-2"),))
    )
    table = catalog.load_table(IDENT)
    assert scan_ids(table) == [10, 11] == dataset_ids(store, table)
    assert [s.snapshot_id for s in table.snapshots()] == [first.version, second.version]
    assert [s.summary.operation.value for s in table.snapshots()] == ["append", "overwrite"]
    assert scan_ids(table, first.version) == [1, 2, 3, 4]  # time travel to the first replace
    assert (first.added_files, first.added_records, first.total_records) == (2, 4, 4)
    assert (second.added_files, second.added_records, second.total_records, second.attempts) == (1, 2, 2, 1)
    assert second.metadata_location == table.metadata_location
    third = iceberg.commit(
        catalog, IDENT, TableWrite(WriteMode.REPLACE, (data_file(store, location, rows([20]), run_id="run-3"),))
    )
    table = catalog.load_table(IDENT)
    assert len(table.snapshots()) == 3 and scan_ids(table) == [20] and scan_ids(table, second.version) == [10, 11]
    assert table.current_snapshot().summary[COMMIT_ID] == third.commit_id


def test_replace_partition_leaves_other_partitions_files_untouched(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA, iceberg.IcebergPartition("day", "day"))
    keep = data_file(store, location, rows([5, 6], D2), partition=("day", D2))
    old = data_file(store, location, rows([1, 2], D1), number=1, partition=("day", D1))
    iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (keep, old)))
    new = data_file(store, location, rows([7], D1), run_id="run-2", partition=("day", D1))
    result = iceberg.commit(catalog, IDENT, TableWrite(WriteMode.REPLACE_PARTITION, (new,), partition_value=D1))
    table = catalog.load_table(IDENT)
    assert scan_ids(table) == [5, 6, 7] == dataset_ids(store, table)
    assert {t.file.file_path for t in table.scan().plan_files()} == {keep, new}
    assert len(table.snapshots()) == 2 and result.total_records == 3
    # A file of another partition is refused, and nothing is committed.
    stray = data_file(store, location, rows([9], D2), run_id="run-3", partition=("day", D2))
    with pytest.raises(DataFileError, match="not the replaced partition"):
        iceberg.commit(catalog, IDENT, TableWrite(WriteMode.REPLACE_PARTITION, (stray,), partition_value=D1))
    assert len(catalog.load_table(IDENT).snapshots()) == 2


def test_append_stores_its_mark_in_the_same_snapshot(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    assert iceberg.read_mark(catalog, IDENT) is None and iceberg.begin(catalog, IDENT).version is None
    marked = iceberg.commit(
        catalog,
        IDENT,
        TableWrite(
            WriteMode.APPEND, (data_file(store, location, rows([1])),), properties={MARK: "2026-11-24T00:00:00"}
        ),
    )
    table = catalog.load_table(IDENT)
    assert len(table.snapshots()) == 1
    summary = table.current_snapshot().summary
    assert (summary[MARK], summary[COMMIT_ID]) == ("2026-11-24T00:00:00", marked.commit_id)
    assert iceberg.read_mark(catalog, IDENT) == "2026-11-24T00:00:00"
    # A write without a mark carries the table's forward, so expiring the marked snapshot keeps it.
    iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([2]), run_id="r2"),)))
    assert iceberg.expire_snapshots(catalog, IDENT, keep=1) == [marked.version]
    assert iceberg.read_mark(catalog, IDENT) == "2026-11-24T00:00:00"
    assert iceberg.begin(catalog, IDENT).mark == "2026-11-24T00:00:00"


def test_a_safe_append_that_loses_the_race_retries_and_both_rows_land(
    store: Store, racing: RacingCatalog, location: str
):
    iceberg.ensure_table(racing, IDENT, location, SCHEMA)
    iceberg.commit(racing, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1])),)))
    base = iceberg.begin(racing, IDENT)
    other = TableWrite(WriteMode.APPEND, (data_file(store, location, rows([2]), run_id="other"),))
    racing.before_next_commit = lambda: iceberg.commit(iceberg_twin(racing), IDENT, other)
    mine = TableWrite(WriteMode.APPEND, (data_file(store, location, rows([3]), run_id="mine"),), base=base)
    result = iceberg.commit(racing, IDENT, mine)
    table = racing.load_table(IDENT)
    assert result.attempts == 2  # the first attempt met CommitFailedException from the catalog
    assert scan_ids(table) == [1, 2, 3] == dataset_ids(store, table)
    assert len(table.snapshots()) == 3


def test_an_unsafe_replace_on_a_stale_base_fails_and_loses_no_rows(store: Store, racing: RacingCatalog, location: str):
    iceberg.ensure_table(racing, IDENT, location, SCHEMA)
    iceberg.commit(racing, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1])),)))
    stale = iceberg.begin(racing, IDENT)
    iceberg.commit(
        racing, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([2]), run_id="other"),))
    )
    replace = TableWrite(WriteMode.REPLACE, (data_file(store, location, rows([9]), run_id="mine"),), base=stale)
    with pytest.raises(ConcurrentCommitError, match="another writer changed the table"):
        iceberg.commit(racing, IDENT, replace)
    # The same when the other commit lands between this writer's refresh and its commit.
    racing.before_next_commit = lambda: iceberg.commit(
        iceberg_twin(racing), IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([3]), run_id="o2"),))
    )
    with pytest.raises(ConcurrentCommitError):
        iceberg.commit(racing, IDENT, TableWrite(WriteMode.REPLACE, replace.files))
    table = racing.load_table(IDENT)
    assert scan_ids(table) == [1, 2, 3] == dataset_ids(store, table) and len(table.snapshots()) == 3


def test_a_marked_append_refuses_a_moved_mark(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    base = iceberg.begin(catalog, IDENT)
    first = TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1])),), properties={MARK: "m1"}, base=base)
    iceberg.commit(catalog, IDENT, first)
    again = TableWrite(
        WriteMode.APPEND, (data_file(store, location, rows([1]), run_id="r2"),), properties={MARK: "m1"}, base=base
    )
    with pytest.raises(ConcurrentCommitError, match="the mark moved"):
        iceberg.commit(catalog, IDENT, again)
    assert scan_ids(catalog.load_table(IDENT)) == [1]


@pytest.mark.parametrize("lost", [OSError, CommitStateUnknownException])
def test_a_commit_whose_answer_was_lost_is_not_committed_twice(
    store: Store, racing: RacingCatalog, location: str, lost: type[BaseException]
):
    iceberg.ensure_table(racing, IDENT, location, SCHEMA)
    write = TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1, 2])),))
    racing.lose_next_answer = lost
    if lost is OSError:  # not a race: the caller sees the error and retries with the same commit id
        with pytest.raises(OSError):
            iceberg.commit(racing, IDENT, write, commit_id="c-1")
        result = iceberg.commit(racing, IDENT, write, commit_id="c-1")
        assert result.attempts == 1
    else:  # unknown state: the module's own retry finds the commit
        result = iceberg.commit(racing, IDENT, write, commit_id="c-1")
        assert result.attempts == 2
    table = racing.load_table(IDENT)
    assert scan_ids(table) == [1, 2] and len(table.snapshots()) == 1
    assert (result.version, result.added_records) == (table.current_snapshot().snapshot_id, 2)


def test_the_sweep_deletes_only_unlisted_files_of_finished_runs(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    replaced = data_file(store, location, rows([1]), run_id="done-1")
    iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (replaced,)))
    live = data_file(store, location, rows([2]), run_id="done-2")
    iceberg.commit(catalog, IDENT, TableWrite(WriteMode.REPLACE, (live,)))
    orphan = data_file(store, location, rows([3]), run_id="crashed", partition=("day", D1))
    running = data_file(store, location, rows([4]), run_id="running")
    recent = data_file(store, location, rows([5]), run_id="young", started=dt.datetime.now(dt.UTC))
    foreign = store.put(f"{location}/data/00000-0-1b2c.parquet")
    before = store.keys(location)
    deleted = iceberg.sweep_orphans(catalog, IDENT, store.fs, leave_alone={"running"})
    assert deleted == [orphan]
    # (pyarrow's S3FileSystem leaves a `day=.../` folder marker where it deleted a folder's last file)
    assert {k for k in store.keys(location) if not k.endswith("/")} == before - {orphan}
    assert {replaced, live, running, recent, foreign} <= store.keys(location)
    # Once the snapshot that lists it expires, the replaced file is an orphan too.
    iceberg.expire_snapshots(catalog, IDENT, keep=1)
    assert iceberg.sweep_orphans(catalog, IDENT, store.fs, leave_alone=lambda name: name.run_id == "running") == [
        replaced
    ]
    assert scan_ids(catalog.load_table(IDENT)) == [2]


def test_ensure_table_turns_off_pyiceberg_retries_and_commit_requires_it(
    store: Store, catalog: SqlCatalog, location: str
):
    catalog.create_namespace("sales")
    catalog.create_table(IDENT, schema=SCHEMA, location=location)
    with pytest.raises(Exception, match="ensure_table"):
        iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1])),)))
    table = iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    assert table.properties["commit.retry.num-retries"] == "0"
    assert (
        iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1])),))).attempts
        == 1
    )


def test_the_refresh_statement_names_the_metadata_file_relative_to_the_volume():
    statement = iceberg.snowflake_refresh_statement(
        'analytics.public."Orders"', "s3://lake/sales/orders/metadata/00002-ab.metadata.json", "s3://lake/sales/"
    )
    assert statement == (
        'ALTER ICEBERG TABLE "ANALYTICS"."PUBLIC"."Orders" REFRESH \'orders/metadata/00002-ab.metadata.json\''
    )
    with pytest.raises(ValueError, match="not under"):
        iceberg.snowflake_refresh_statement("t", "s3://other/t/metadata/v1.metadata.json", "s3://lake")


def iceberg_twin(catalog: SqlCatalog) -> SqlCatalog:
    """Another writer: its own catalog object on the same SQLite database and warehouse."""
    return SqlCatalog(catalog.name, **catalog.properties)


def test_replace_partition_by_month_of_a_utc_timestamp(store: Store, catalog: SqlCatalog, location: str):
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("at", pa.timestamp("us", "UTC"))])

    def at(ids: list[int], when: dt.datetime) -> pa.Table:
        return pa.table({"id": ids, "at": [when] * len(ids)}, schema=schema)

    nov, dec = dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, 0, tzinfo=dt.UTC)
    iceberg.ensure_table(catalog, IDENT, location, schema, iceberg.IcebergPartition("at", "month"))
    december = data_file(store, location, at([2], dec), number=1)
    iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, at([1], nov)), december)))
    again = data_file(store, location, at([3], nov), run_id="r2")
    empty = data_file(store, location, at([], nov), run_id="r2", number=1)
    result = iceberg.commit(
        catalog, IDENT, TableWrite(WriteMode.REPLACE_PARTITION, (again, empty), partition_value=dt.date(2026, 11, 1))
    )
    assert result.skipped_empty == (empty,)
    table = catalog.load_table(IDENT)
    assert scan_ids(table) == [2, 3] and {t.file.file_path for t in table.scan().plan_files()} == {december, again}
    assert iceberg.partition_of(table) == iceberg.IcebergPartition("at", "month")
    with pytest.raises(TableCommitError, match="partitioned by"):
        iceberg.ensure_table(catalog, IDENT, location, schema, iceberg.IcebergPartition("at", "day"))


def test_empty_and_foreign_files(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    empty = data_file(store, location, rows([]))
    full = data_file(store, location, rows([1]), number=1)
    result = iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (empty, full)))
    assert (result.added_files, result.skipped_empty) == (1, (empty,))
    other_schema = data_file(store, location, pa.table({"id": ["text"]}), number=2)
    with pytest.raises(DataFileError, match="cannot be added"):
        iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (other_schema,)))
    with pytest.raises(DataFileError, match="does not exist"):
        iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (f"{location}/data/missing.parquet",)))
    with pytest.raises(DataFileError, match="already in the table"):
        iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (full,)))
    assert len(catalog.load_table(IDENT).snapshots()) == 1


def test_a_retry_without_a_base_finds_its_commit_behind_newer_ones(store: Store, catalog: SqlCatalog, location: str):
    iceberg.ensure_table(catalog, IDENT, location, SCHEMA)
    write = TableWrite(WriteMode.APPEND, (data_file(store, location, rows([1])),))
    first = iceberg.commit(catalog, IDENT, write, commit_id="c-1")
    iceberg.commit(catalog, IDENT, TableWrite(WriteMode.APPEND, (data_file(store, location, rows([2]), run_id="o"),)))
    again = iceberg.commit(catalog, IDENT, write, commit_id="c-1")  # as if the first answer had been lost
    assert again.version == first.version and scan_ids(catalog.load_table(IDENT)) == [1, 2]
    assert again.metadata_location != catalog.load_table(IDENT).metadata_location  # the one that made it current
