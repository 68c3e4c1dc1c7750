"""Data file names (data_migration/tables/naming.py): what the orphan sweep relies on."""

from __future__ import annotations

import datetime as dt

import pytest

from data_migration.tables.naming import data_file_uri, parse_data_file, partition_folder, split_uri

STARTED = dt.datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_name_says_its_run_its_start_and_its_number():
    uri = data_file_uri("s3://lake/sales/orders/", "1a2b-3c4d", STARTED, 7, "ORDER_DATE=2026-11-24")
    assert uri == "s3://lake/sales/orders/data/ORDER_DATE=2026-11-24/dm-20261124T120000123456Z-1a2b-3c4d-00007.parquet"
    parsed = parse_data_file(uri)
    assert parsed is not None and (parsed.started, parsed.run_id, parsed.number) == (STARTED, "1a2b-3c4d", 7)


@pytest.mark.parametrize(
    "name",
    [
        "00000-0-6a1b2c3d-1111-2222-3333-444455556666.parquet",  # pyiceberg
        "part-00000-6a1b2c3d-1111-2222-3333-444455556666-c000.snappy.parquet",  # delta-rs
        "dm-20261124T120000123456Z-run-1-00001.parquet.tmp",
        "dm-2026-run-1-00001.parquet",
    ],
)
def test_other_writers_names_are_not_ours(name: str):
    assert parse_data_file(f"s3://lake/t/data/{name}") is None


def test_unsafe_parts_are_refused_or_left_out_of_the_path():
    with pytest.raises(ValueError, match="run id"):
        data_file_uri("s3://lake/t", "../x", STARTED, 0)
    with pytest.raises(ValueError, match="partition folder"):
        data_file_uri("s3://lake/t", "r", STARTED, 0, "a=b/c")
    assert partition_folder("day", "2026-11-24") == "day=2026-11-24"
    assert partition_folder("name", "a b/c") is None
    assert split_uri("s3://bkt/a/b") == ("bkt", "a/b")
    with pytest.raises(ValueError):
        split_uri("/local/path")
