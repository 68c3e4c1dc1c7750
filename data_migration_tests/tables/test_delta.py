"""Delta commits (data_migration/tables/delta.py) with deltalake 1.6.6 on moto: what each mode
leaves (rows, versions, files), races, lost answers and the orphan sweep. Read back with
deltalake's DeltaTable and, independently, with pyarrow.dataset over the files the log lists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from data_migration.tables import delta
from data_migration.tables.commit import (
    COMMIT_ID,
    MARK,
    ConcurrentCommitError,
    DataFileError,
    TableCommitError,
    TableWrite,
    WriteMode,
)
from data_migration_tests.tables.conftest import KEY, REGION, Store, data_file

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("day", pa.date32()), pa.field("name", pa.string())])
D1, D2 = dt.date(2026, 11, 23), dt.date(2026, 11, 24)


def rows(ids: list[int], day: dt.date = D1) -> pa.Table:
    return pa.table({"id": ids, "day": [day] * len(ids), "name": [f"n{i}" for i in ids]}, schema=SCHEMA)


@pytest.fixture
def uri(store: Store) -> str:
    return f"{store.root}/lake/orders"


@pytest.fixture
def options(store: Store) -> dict[str, str]:
    return delta.s3_storage_options(REGION, store.endpoint, KEY, KEY)


def table_ids(uri: str, options: dict[str, str], version: int | None = None) -> list[int]:
    table = DeltaTable(uri, version=version, storage_options=options)
    return sorted(pa.table(table.to_pyarrow_table()).column("id").to_pylist())


def dataset_ids(store: Store, uri: str, options: dict[str, str]) -> list[int]:
    files = [f.removeprefix("s3://") for f in DeltaTable(uri, storage_options=options).file_uris()]
    return sorted(ds.dataset(files, format="parquet", filesystem=store.fs).to_table().column("id").to_pylist())


@pytest.fixture
def before_next_commit(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], None]:
    """Let another writer commit between this writer's reload and its commit, once."""
    original = DeltaTable.create_write_transaction
    pending: list[Callable[[], Any]] = []

    def racing(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        if pending:
            pending.pop()()
        original(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", racing)
    return pending.append


def test_replace_twice_leaves_the_last_rows_in_one_version_each(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options)
    first = delta.commit(
        uri,
        TableWrite(
            WriteMode.REPLACE, (data_file(store, uri, rows([1, 2, 3])), data_file(store, uri, rows([4]), number=1))
        ),
        options,
    )
    second = delta.commit(
        uri, TableWrite(WriteMode.REPLACE, (data_file(store, uri, rows([10, 11]), run_id="r2"),)), options
    )
    assert (first.version, second.version) == (1, 2)  # version 0 is the table's creation
    assert table_ids(uri, options) == [10, 11] == dataset_ids(store, uri, options)
    assert table_ids(uri, options, version=1) == [1, 2, 3, 4]  # time travel
    assert (first.added_files, first.added_records, first.total_records) == (2, 4, 4)
    assert (second.added_records, second.total_records, second.attempts) == (2, 2, 1)
    assert second.metadata_location == f"{uri}/_delta_log/00000000000000000002.json"
    third = delta.commit(uri, TableWrite(WriteMode.REPLACE, (data_file(store, uri, rows([20]), run_id="r3"),)), options)
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 3 and table_ids(uri, options) == [20] and table_ids(uri, options, 2) == [10, 11]
    assert table.history(1)[0][COMMIT_ID] == third.commit_id
    assert [a["num_records"] for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()] == [1]


def test_replace_partition_leaves_other_partitions_files_untouched(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options, partition_by="day")
    keep = data_file(store, uri, rows([5, 6], D2), partition=("day", D2))
    old = data_file(store, uri, rows([1, 2], D1), number=1, partition=("day", D1))
    delta.commit(uri, TableWrite(WriteMode.APPEND, (keep, old)), options)
    new = data_file(store, uri, rows([7], D1), run_id="r2", partition=("day", D1))
    result = delta.commit(uri, TableWrite(WriteMode.REPLACE_PARTITION, (new,), partition_value=D1), options)
    table = DeltaTable(uri, storage_options=options)
    assert table_ids(uri, options) == [5, 6, 7] == dataset_ids(store, uri, options)
    assert set(table.file_uris()) == {keep, new}
    assert (table.version(), result.total_records) == (2, 3)
    stray = data_file(store, uri, rows([9], D2), run_id="r3", partition=("day", D2))
    with pytest.raises(DataFileError, match="not the replaced partition"):
        delta.commit(uri, TableWrite(WriteMode.REPLACE_PARTITION, (stray,), partition_value=D1), options)
    assert DeltaTable(uri, storage_options=options).version() == 2


def test_append_stores_its_mark_in_the_same_commit(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options)
    assert delta.read_mark(uri, options) is None
    write = TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([1])),), properties={MARK: "2026-11-24T00:00:00"})
    result = delta.commit(uri, write, options)
    info = DeltaTable(uri, storage_options=options).history(1)[0]
    assert (info["version"], info[MARK], info[COMMIT_ID]) == (result.version, "2026-11-24T00:00:00", result.commit_id)
    assert delta.read_mark(uri, options) == "2026-11-24T00:00:00"
    delta.commit(uri, TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([2]), run_id="r2"),)), options)
    assert delta.read_mark(uri, options) == "2026-11-24T00:00:00" == delta.begin(uri, options).mark
    assert delta.read_mark(uri, options, version=0) is None


def test_a_safe_append_that_loses_the_race_retries_and_both_rows_land(
    store: Store, uri: str, options: dict[str, str], before_next_commit: Callable
):
    delta.ensure_table(uri, SCHEMA, options)
    base = delta.begin(uri, options)
    other = TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([2]), run_id="other"),))
    before_next_commit(lambda: delta.commit(uri, other, options))
    result = delta.commit(
        uri, TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([3]), run_id="mine"),), base=base), options
    )
    assert result.attempts == 2 and result.version == 2  # CommitFailedError on version 1, then version 2
    assert table_ids(uri, options) == [2, 3] == dataset_ids(store, uri, options)


def test_an_unsafe_replace_on_a_stale_base_fails_and_loses_no_rows(
    store: Store, uri: str, options: dict[str, str], before_next_commit: Callable
):
    delta.ensure_table(uri, SCHEMA, options)
    delta.commit(uri, TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([1])),)), options)
    stale = delta.begin(uri, options)
    delta.commit(uri, TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([2]), run_id="other"),)), options)
    replace = TableWrite(WriteMode.REPLACE, (data_file(store, uri, rows([9]), run_id="mine"),), base=stale)
    with pytest.raises(ConcurrentCommitError, match="another writer changed the table"):
        delta.commit(uri, replace, options)
    other = TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([3]), run_id="o2"),))
    before_next_commit(lambda: delta.commit(uri, other, options))
    with pytest.raises(ConcurrentCommitError):
        delta.commit(uri, TableWrite(WriteMode.REPLACE, replace.files), options)
    assert table_ids(uri, options) == [1, 2, 3] == dataset_ids(store, uri, options)
    assert DeltaTable(uri, storage_options=options).version() == 3


def test_a_marked_append_refuses_a_moved_mark(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options)
    base = delta.begin(uri, options)
    delta.commit(
        uri,
        TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([1])),), properties={MARK: "m1"}, base=base),
        options,
    )
    again = TableWrite(
        WriteMode.APPEND, (data_file(store, uri, rows([1]), run_id="r2"),), properties={MARK: "m1"}, base=base
    )
    with pytest.raises(ConcurrentCommitError, match="the mark moved"):
        delta.commit(uri, again, options)
    assert table_ids(uri, options) == [1]


@pytest.mark.parametrize("lost", [OSError, CommitFailedError])
def test_a_commit_whose_answer_was_lost_is_not_committed_twice(
    store: Store, uri: str, options: dict[str, str], monkeypatch: pytest.MonkeyPatch, lost: type[BaseException]
):
    delta.ensure_table(uri, SCHEMA, options)
    original = DeltaTable.create_write_transaction
    calls: list[int] = []

    def commit_then_lose(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise lost("the answer to this commit was lost")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_lose)
    write = TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([1, 2])),))
    if lost is OSError:  # not a race: the caller sees it and retries with the same commit id
        with pytest.raises(OSError):
            delta.commit(uri, write, options, commit_id="c-1")
        result = delta.commit(uri, write, options, commit_id="c-1")
        assert result.attempts == 1
    else:  # looks like a lost race: the module's own retry finds the commit
        result = delta.commit(uri, write, options, commit_id="c-1")
        assert result.attempts == 2
    assert len(calls) == 1 and (result.version, result.added_records) == (1, 2)
    assert table_ids(uri, options) == [1, 2] and DeltaTable(uri, storage_options=options).version() == 1


def test_the_sweep_deletes_only_unlisted_files_of_finished_runs(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options)
    replaced = data_file(store, uri, rows([1]), run_id="done-1")
    delta.commit(uri, TableWrite(WriteMode.APPEND, (replaced,)), options)
    live = data_file(store, uri, rows([2]), run_id="done-2")
    delta.commit(uri, TableWrite(WriteMode.REPLACE, (live,)), options)
    orphan = data_file(store, uri, rows([3]), run_id="crashed")
    running = data_file(store, uri, rows([4]), run_id="running")
    recent = data_file(store, uri, rows([5]), run_id="young", started=dt.datetime.now(dt.UTC))
    foreign = store.put(f"{uri}/data/part-00000-1b2c-c000.snappy.parquet")
    before = store.keys(uri)
    assert delta.sweep_orphans(uri, options, store.fs, leave_alone={"running"}) == [orphan]
    assert {k for k in store.keys(uri) if not k.endswith("/")} == before - {orphan}
    # `replaced` stays: version 1, still in the log, reads it.
    assert {replaced, live, running, recent, foreign} <= store.keys(uri)
    assert table_ids(uri, options, version=1) == [1]


def test_files_the_table_cannot_take_are_refused_before_any_commit(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options)
    other_columns = data_file(store, uri, pa.table({"id": [1]}))
    with pytest.raises(DataFileError, match="has columns"):
        delta.commit(uri, TableWrite(WriteMode.APPEND, (other_columns,)), options)
    with pytest.raises(DataFileError, match="not under the table"):
        delta.commit(uri, TableWrite(WriteMode.APPEND, (f"{store.root}/elsewhere/x.parquet",)), options)
    with pytest.raises(DataFileError, match="cannot be read"):
        delta.commit(uri, TableWrite(WriteMode.APPEND, (f"{uri}/data/missing.parquet",)), options)
    assert DeltaTable(uri, storage_options=options).version() == 0


def test_storage_options_for_an_http_endpoint_and_for_aws():
    assert delta.s3_storage_options("eu-west-1") == {"aws_region": "eu-west-1"}
    assert delta.s3_storage_options("us-east-1", "http://127.0.0.1:5000", "k", "s") == {
        "aws_region": "us-east-1",
        "aws_endpoint_url": "http://127.0.0.1:5000",
        "aws_allow_http": "true",
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
    }


def test_the_store_refuses_a_second_conditional_put_as_delta_rs_needs(store: Store, uri: str):
    from botocore.exceptions import ClientError

    key = f"{uri.removeprefix(store.root + '/')}/_delta_log/00000000000000000001.json"
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"{}", IfNoneMatch="*")  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as refused:
        store.client.put_object(Bucket=store.bucket, Key=key, Body=b"{}", IfNoneMatch="*")  # type: ignore[attr-defined]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_empty_files_are_not_committed_and_are_reported(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options, partition_by="day")
    empty = data_file(store, uri, rows([]), partition=("day", D1))
    full = data_file(store, uri, rows([1], D1), number=1, partition=("day", D1))
    result = delta.commit(uri, TableWrite(WriteMode.APPEND, (empty, full)), options)
    assert (result.added_files, result.skipped_empty) == (1, (empty,))
    assert DeltaTable(uri, storage_options=options).file_uris() == [full]
    empty_again = data_file(store, uri, rows([]), run_id="r2", partition=("day", D1))
    replaced = delta.commit(uri, TableWrite(WriteMode.REPLACE_PARTITION, (empty_again,), partition_value=D1), options)
    assert (replaced.added_files, replaced.skipped_empty, replaced.total_records) == (0, (empty_again,), 0)
    assert table_ids(uri, options) == []


def test_an_existing_table_partitioned_otherwise_is_refused(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options, partition_by="day")
    with pytest.raises(TableCommitError, match="partitioned by"):
        delta.ensure_table(uri, SCHEMA, options)
    assert delta.ensure_table(uri, SCHEMA, options, partition_by="day").version() == 0


def test_a_retry_without_a_base_finds_its_commit_behind_newer_ones(store: Store, uri: str, options: dict[str, str]):
    delta.ensure_table(uri, SCHEMA, options)
    write = TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([1])),))
    first = delta.commit(uri, write, options, commit_id="c-1")
    delta.commit(uri, TableWrite(WriteMode.APPEND, (data_file(store, uri, rows([2]), run_id="other"),)), options)
    again = delta.commit(uri, write, options, commit_id="c-1")  # as if the first answer had been lost
    assert again.version == first.version == 1 and table_ids(uri, options) == [1, 2]
