"""The bounded read-ahead and encode-ahead pipeline (files/pipeline.py), and the writers that use it:
order, errors on every side, early stops, the bound on what is ahead, and output bytes equal to
writing the batches one by one."""

from __future__ import annotations

import decimal
import hashlib
import io
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from data_migration.files import pipeline
from data_migration.files.formats import FORMATS
from data_migration.files.layout import Split, read_manifest, write_export
from data_migration.files.storage import LocalObjectStore


def test_results_come_in_order_whatever_finishes_first() -> None:
    def slow_square(n: int) -> int:
        time.sleep(random.random() / 200)
        return n * n

    assert list(pipeline.ahead(range(200), slow_square, workers=4)) == [(n, n * n) for n in range(200)]


def test_without_work_only_the_reading_is_ahead() -> None:
    readers: set[str] = set()

    def source() -> Iterator[int]:
        for n in range(5):
            readers.add(threading.current_thread().name)
            yield n

    assert list(pipeline.ahead(source())) == [(n, None) for n in range(5)]
    assert readers == {"export-read"}  # not the caller's thread


def test_a_source_error_arrives_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("dropped")

    seen = []
    with pytest.raises(ConnectionError, match="dropped"):
        for item, _ in pipeline.ahead(source(), lambda n: n):
            seen.append(item)
    assert seen == [1, 2]


def test_a_work_error_arrives_at_its_item() -> None:
    def work(n: int) -> int:
        if n == 3:
            raise ValueError("bad batch")
        return n

    seen = []
    with pytest.raises(ValueError, match="bad batch"):
        for item, _ in pipeline.ahead(range(10), work, workers=2):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_stopping_early_stops_the_reader_and_closes_the_source() -> None:
    pulled = []
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            for n in range(1_000_000):
                pulled.append(n)
                yield n
        finally:
            closed.set()

    before = threading.active_count()
    stream = pipeline.ahead(source(), lambda n: n, workers=2, depth=3)
    for item, _ in stream:
        if item == 5:
            break
    stream.close()
    assert closed.is_set()
    assert len(pulled) < 20  # the reader stopped; it did not read the million
    assert threading.active_count() == before


def test_at_most_depth_items_are_ahead_of_the_caller() -> None:
    pulled = []

    def source() -> Iterator[int]:
        for n in range(100):
            pulled.append(n)
            yield n

    stream = pipeline.ahead(source(), lambda n: n, workers=2, depth=4)
    next(stream)
    time.sleep(0.3)  # time enough to read everything, were it unbounded
    # 1 handed to the caller, 4 queued, 1 read and waiting for room
    assert len(pulled) <= 1 + 4 + 1
    stream.close()


def test_a_caller_error_reaches_neither_side_as_success() -> None:
    """The caller fails mid-stream (its writer broke): the reader is stopped, nothing hangs."""
    stream = pipeline.ahead(iter(range(1000)), lambda n: n)
    with pytest.raises(RuntimeError):
        for item, _ in stream:
            if item == 10:
                raise RuntimeError("the sink broke")
    stream.close()


# The writers ------------------------------------------------------------------------------------


def _data(rows: int) -> pa.Table:
    rng = random.Random(7)
    return pa.table(
        {
            "ID": pa.array(range(rows), pa.int64()),
            "PRICE": pa.array(
                [decimal.Decimal(rng.randint(-(10**9), 10**9)).scaleb(-2) for _ in range(rows)], pa.decimal128(12, 2)
            ),
            "NAME": pa.array(
                [
                    None if i % 97 == 0 else rng.choice(["=cmd", 'say "hi"', "plain", "tab\there", "é"])
                    for i in range(rows)
                ]
            ),
            "AT": pa.array([i * 1_000_003 for i in range(rows)], pa.timestamp("us")),
        }
    )


def _one_by_one(file_type: str, batches: list[pa.RecordBatch], schema: pa.Schema) -> bytes:
    sink = io.BytesIO()
    writer = FORMATS[file_type].writer(sink, schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.close()
    return sink.getvalue()


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
@pytest.mark.parametrize("batch_rows", [150_000, 7_000])
def test_the_output_is_what_writing_one_by_one_gives(tmp_path: Path, file_type: str, batch_rows: int) -> None:
    data = _data(150_000)  # one batch larger than a slice, or many small ones
    batches = data.to_batches(max_chunksize=batch_rows)
    store = LocalObjectStore(root=str(tmp_path))
    write_export(store, f"out.{file_type}", FORMATS[file_type], data.schema, iter(batches))
    written = (tmp_path / f"out.{file_type}").read_bytes()
    assert hashlib.sha256(written).digest() == hashlib.sha256(_one_by_one(file_type, batches, data.schema)).digest()


@pytest.mark.parametrize("file_type", ["csv", "json"])
def test_parts_split_inside_an_encoded_batch_hold_exactly_their_rows(tmp_path: Path, file_type: str) -> None:
    data = _data(100_000)
    store = LocalObjectStore(root=str(tmp_path))
    key = f"out/data.{file_type}"
    write_export(
        store, key, FORMATS[file_type], data.schema, iter(data.to_batches(max_chunksize=30_000)),
        split=Split(max_rows=45_000),
    )  # fmt: skip
    manifest = read_manifest(store, key)
    assert [part.rows for part in manifest.parts] == [45_000, 45_000, 10_000]
    offset = 0
    for part in manifest.parts:
        expected = _one_by_one(file_type, data.slice(offset, part.rows).to_batches(), data.schema)
        assert (tmp_path / part.key).read_bytes() == expected
        offset += part.rows


def test_a_failing_source_leaves_no_object(tmp_path: Path) -> None:
    data = _data(200_000)

    def source() -> Iterator[Any]:
        yield from data.to_batches(max_chunksize=50_000)[:2]
        raise ConnectionError("the result stream broke")

    store = LocalObjectStore(root=str(tmp_path))
    with pytest.raises(ConnectionError):
        write_export(store, "out.csv", FORMATS["csv"], data.schema, source())
    assert list(tmp_path.rglob("*")) == []
