"""Split output: numbered parts and a manifest written last, with a compare-and-swap commit.

Run against both stores (a local folder, and S3 on moto's server), and end to end through Dagster.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_migration.config import ConfigError, parse_exports
from data_migration.config.paths import split_prefix
from data_migration.definitions import build_definitions
from data_migration.files.formats import FORMATS, decompressed
from data_migration.files.layout import ManifestError, Split, manifest_key, read_manifest, verified_bytes, write_export
from data_migration.files.storage import ConcurrentWriteError, LocalObjectStore, ObjectStore
from data_migration_tests.support import BUCKET, s3_store, write_config

KEY = "exports/lineitem/data.parquet"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(root=str(tmp_path / "bucket"))
    request.getfixturevalue("s3")
    return s3_store(request.getfixturevalue("moto_endpoint"))


def table(rows: int, start: int = 0) -> pa.Table:
    ids = pa.array(range(start, start + rows), pa.int64())
    return pa.table({"ID": ids, "NAME": pa.array([f"row {i}" for i in range(start, start + rows)])})


def batches(data: pa.Table, size: int = 1000) -> Iterator[pa.RecordBatch]:
    yield from data.to_batches(max_chunksize=size)


def read_all(store: ObjectStore, key: str, file_type: str = "parquet", gzip: bool = False) -> pa.Table:
    parts = []
    for part in read_manifest(store, key).parts:
        with store.open_read(part.key) as source:
            verified_bytes(source, part)
            parts.append(FORMATS[file_type].reader.read(decompressed(source, gzip)))
    return pa.concat_tables(parts)


def keys(store: ObjectStore, prefix: str = "exports/") -> list[str]:
    return store.list_keys(prefix) or []


def test_split_prefix_drops_the_extension():
    assert split_prefix("exports/lineitem/data.parquet") == "exports/lineitem/data"
    assert split_prefix("exports/x/data.csv.gz") == "exports/x/data"
    assert split_prefix("exports/x.v2/data") == "exports/x.v2/data"
    assert manifest_key("exports/x/data.jsonl") == "exports/x/data/manifest.json"


def test_rows_limit_writes_parts_and_a_manifest_last(store: ObjectStore):
    data = table(10_500)
    result = write_export(store, KEY, FORMATS["parquet"], data.schema, batches(data, 700), split=Split(max_rows=3000))

    manifest = read_manifest(store, KEY)
    assert [part.rows for part in manifest.parts] == [3000, 3000, 3000, 1500]
    assert manifest.rows == result.rows == 10_500
    assert manifest.sha256 == result.sha256 and result.uri == store.uri(manifest_key(KEY))
    assert [p.key.rsplit("/", 1)[1] for p in manifest.parts] == [f"data-0000{i}.parquet" for i in range(4)]
    # Every object under the export's folder is the manifest or a part it lists; nothing at the key.
    assert set(keys(store)) == {manifest_key(KEY), *(p.key for p in manifest.parts)}
    assert not store.exists(KEY)
    assert read_all(store, KEY).equals(data)
    listed = json.loads(store.read_versioned(manifest_key(KEY))[0])
    assert listed["row_count"] == 10_500 and listed["file_type"] == "parquet"
    assert listed["size_bytes"] == sum(f["size_bytes"] for f in listed["files"]) == result.size


@pytest.mark.parametrize("file_type, gzip, limit", [("csv", False, 1_000_000), ("json", True, 200_000)])
def test_size_limit_bounds_each_part(store: ObjectStore, file_type: str, gzip: bool, limit: int):
    data = table(200_000)
    key = "exports/big/data." + ("csv" if file_type == "csv" else "jsonl.gz")
    result = write_export(
        store, key, FORMATS[file_type], data.schema, batches(data, 150_000), gzip=gzip, split=Split(max_bytes=limit)
    )
    assert len(result.files) > 1
    # A part stops at the first slice (65,536 rows) that takes it past the limit.
    assert all(part.size < limit * 2 for part in result.files[:-1])
    assert all(part.key.endswith(".jsonl.gz" if gzip else ".csv") for part in result.files)
    back = read_all(store, key, file_type, gzip)
    assert back.num_rows == 200_000 and back.column("ID").to_pylist() == list(range(200_000))


def test_empty_result_is_one_part_with_the_schema(store: ObjectStore):
    data = table(0)
    write_export(store, KEY, FORMATS["parquet"], data.schema, iter([]), split=Split(max_rows=10))
    manifest = read_manifest(store, KEY)
    assert [part.rows for part in manifest.parts] == [0]
    assert read_all(store, KEY).schema.equals(data.schema)


class Boom(Exception):
    pass


def failing(data: pa.Table, after_rows: int) -> Iterator[pa.RecordBatch]:
    sent = 0
    for batch in batches(data, 500):
        if sent >= after_rows:
            raise Boom("Snowflake went away")
        sent += batch.num_rows
        yield batch


@pytest.mark.parametrize("after_rows", [0, 2500, 9500])
def test_failed_run_keeps_the_previous_export_whole(store: ObjectStore, after_rows: int):
    good = table(5000)
    write_export(store, KEY, FORMATS["parquet"], good.schema, batches(good), split=Split(max_rows=2000))
    before = {key: _digest(store, key) for key in keys(store)}

    with pytest.raises(Boom):
        write_export(
            store,
            KEY,
            FORMATS["parquet"],
            good.schema,
            failing(table(10_000, 100), after_rows),
            split=Split(max_rows=2000),
        )

    # The manifest and its parts are untouched, and the failed run's own parts are gone.
    assert {key: _digest(store, key) for key in keys(store)} == before
    assert read_all(store, KEY).equals(good)
    assert _open_uploads(store) == 0


def test_concurrent_runs_commit_exactly_one(store: ObjectStore):
    """Run A reads the manifest version, B commits meanwhile, A's commit must then fail."""
    first = table(100)
    write_export(store, KEY, FORMATS["parquet"], first.schema, batches(first), split=Split(max_rows=40))
    winner = table(3000, 1_000_000)

    def a_stream() -> Iterator[pa.RecordBatch]:
        yield from batches(table(1000, 5000), 500)
        # B starts and commits while A is still streaming.
        write_export(store, KEY, FORMATS["parquet"], winner.schema, batches(winner), split=Split(max_rows=1000))

    with pytest.raises(ConcurrentWriteError, match="another run"):
        write_export(store, KEY, FORMATS["parquet"], first.schema, a_stream(), split=Split(max_rows=400))
    assert read_all(store, KEY).equals(winner)
    # A removed its own parts; B removed the first run's, which it superseded.
    assert set(keys(store)) == {manifest_key(KEY), *(p.key for p in read_manifest(store, KEY).parts)}


def test_create_only_when_no_manifest_existed(store: ObjectStore):
    """Two first runs: the one that commits second finds a manifest it did not expect."""
    data = table(10)

    def late() -> Iterator[pa.RecordBatch]:
        yield from batches(data)
        write_export(store, KEY, FORMATS["parquet"], data.schema, batches(data), split=Split(max_rows=5))

    with pytest.raises(ConcurrentWriteError):
        write_export(store, KEY, FORMATS["parquet"], data.schema, late(), split=Split(max_rows=5))
    assert read_manifest(store, KEY).rows == 10


def test_rerun_removes_superseded_parts_and_leftovers_of_killed_runs(store: ObjectStore, tmp_path: Path):
    data = table(1000)
    write_export(store, KEY, FORMATS["parquet"], data.schema, batches(data), split=Split(max_rows=300))
    old_parts = [p.key for p in read_manifest(store, KEY).parts]
    # A killed run: a finished part no manifest lists, and an unfinished upload / partial file.
    orphan = f"{split_prefix(KEY)}/20200101T000000000000Z-deadbeef/data-00000.parquet"
    with store.open_write(orphan, "application/octet-stream") as sink:
        sink.write(b"half an export")
    _leave_unfinished_upload(store, f"{split_prefix(KEY)}/20200101T000000000000Z-deadbeef/data-00001.parquet")
    assert _open_uploads(store) == 1

    result = write_export(store, KEY, FORMATS["parquet"], data.schema, batches(data), split=Split(max_rows=300))
    assert result.stale_removed == len(old_parts) + 2
    assert set(keys(store)) == {manifest_key(KEY), *(p.key for p in result.files)}
    assert _open_uploads(store) == 0
    assert read_all(store, KEY).equals(data)


def test_readers_refuse_a_part_that_differs_from_the_manifest(store: ObjectStore):
    data = table(1000)
    write_export(store, KEY, FORMATS["parquet"], data.schema, batches(data), split=Split(max_rows=400))
    part = read_manifest(store, KEY).parts[1]
    with store.open_write(part.key, "application/octet-stream") as sink:  # same size, other bytes
        with store.open_read(read_manifest(store, KEY).parts[0].key) as other:
            sink.write(other.read())
    with pytest.raises(ManifestError, match="but the manifest lists"):
        read_all(store, KEY)


def test_manifest_cannot_point_outside_the_export(store: ObjectStore):
    body = {
        "format": "data-migration/manifest@1",
        "row_count": 1,
        "files": [{"path": "../../secret/x", "rows": 1, "size_bytes": 1, "sha256": "0"}],
    }
    store.put_if_unchanged(manifest_key(KEY), json.dumps(body).encode(), "application/json", None)
    with pytest.raises(ManifestError, match="outside the export's folder"):
        read_manifest(store, KEY)


def test_single_file_export_stays_one_object(store: ObjectStore):
    data = table(5000)
    result = write_export(store, KEY, FORMATS["parquet"], data.schema, batches(data))
    assert keys(store) == [KEY] and len(result.files) == 1
    with store.open_read(KEY) as source:
        assert pq.read_table(source).equals(data)


def test_parquet_row_groups_have_the_configured_size():
    data = table(10_000)
    sink = io.BytesIO()
    writer = FORMATS["parquet"].writer(sink, data.schema, row_group_rows=3000)
    for batch in batches(data, 700):  # batch sizes unrelated to the group size
        writer.write_batch(batch)
    writer.close()
    metadata = pq.ParquetFile(io.BytesIO(sink.getvalue())).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3000, 3000, 3000, 1000]
    assert metadata.row_group(0).column(0).statistics.has_min_max
    assert pq.read_table(io.BytesIO(sink.getvalue())).equals(data)


# Config -----------------------------------------------------------------------------------------


def _parse(*entries: dict[str, Any]) -> Any:
    return parse_exports({"exports": list(entries)}, "exports.yaml")


def test_config_split_fields():
    spec = _parse(
        {
            "table": "LINEITEM",
            "s3_path": KEY,
            "max_rows_per_file": 1_000_000,
            "max_file_size_mb": 256,
            "row_group_rows": 100_000,
        }
    ).exports[0]
    assert spec.split == {"max_rows": 1_000_000, "max_bytes": 256_000_000}
    assert spec.output_prefix == "exports/lineitem/data"
    assert dict(spec.format_options)["row_group_rows"] == 100_000
    plain = _parse({"table": "LINEITEM", "s3_path": KEY}).exports[0]
    assert plain.split is None and plain.code_version != spec.code_version


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"max_rows_per_file": 0}, "exports[0] (T).max_rows_per_file: input should be greater than 0"),
        ({"max_rows_per_file": "10"}, "exports[0] (T).max_rows_per_file:"),
        ({"max_file_size_mb": 0.5}, "exports[0] (T).max_file_size_mb: 0.5 is below the minimum of 1 (MB)"),
        (
            {"file_type": "csv", "s3_path": "x/t.csv", "row_group_rows": 10},
            "exports[0] (T).row_group_rows: applies to file_type parquet only",
        ),
    ],
)
def test_config_split_fields_are_checked(entry: dict[str, Any], message: str):
    with pytest.raises(ConfigError) as raised:
        _parse({"table": "T", "s3_path": "x/t.parquet", **entry})
    assert message in str(raised.value)


def test_config_split_folder_belongs_to_its_export():
    with pytest.raises(ConfigError) as raised:
        _parse(
            {"table": "A", "s3_path": "x/data.parquet", "max_rows_per_file": 10},
            {"table": "B", "s3_path": "x/data/other.csv", "file_type": "csv"},
        )
    assert (
        "exports[1] (B).s3_path: 'x/data/other.csv' lies inside the folder 'x/data' of exports[0] (A)'s split output"
        in str(raised.value)
    )


# Through Dagster ---------------------------------------------------------------------------------


def test_split_export_end_to_end(production_env: dict, s3: Any, tmp_path: Path):
    config = write_config(
        tmp_path / "exports.yaml",
        [{"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "max_rows_per_file": 4000}],
    )
    defs = build_definitions(config, production_env)

    @dg.asset(ins={"orders": dg.AssetIn(key="ORDERS")})
    def order_count(orders: Any) -> int:
        return len(orders)

    instance = dg.DagsterInstance.ephemeral()
    assets = [*defs.assets, order_count]  # type: ignore[list-item]
    result = dg.materialize(assets, resources=defs.resources, instance=instance, selection=["ORDERS", "order_count"])
    assert result.success
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("ORDERS")[0].metadata.items()}
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="exports/orders/data/manifest.json")["Body"].read())
    rows = manifest["row_count"]
    assert rows == metadata["dagster/row_count"] == result.output_for_node("order_count") > 4000
    assert metadata["file_count"] == len(manifest["files"]) == -(-rows // 4000)
    assert metadata["dagster/uri"] == f"s3://{BUCKET}/exports/orders/data/manifest.json"
    assert manifest["export"] == "ORDERS" and manifest["run_id"] == result.run_id
    assert [c["name"] for c in manifest["columns"]][:2] == ["O_ORDERKEY", "O_CUSTKEY"]

    checks = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=instance,  # type: ignore[list-item]
        selection=dg.AssetSelection.checks_for_assets("ORDERS"),
    )
    evaluations = {e.check_name: e for e in checks.get_asset_check_evaluations()}
    assert evaluations["readable"].passed and evaluations["row_count_matches_source"].passed


def _digest(store: ObjectStore, key: str) -> str:
    with store.open_read(key) as source:
        return hashlib.sha256(source.read()).hexdigest()


def _open_uploads(store: ObjectStore) -> int:
    if isinstance(store, LocalObjectStore):
        return len(list(Path(store.root).rglob(".*.partial")))
    client = store.s3.get_client()
    return len(client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


def _leave_unfinished_upload(store: ObjectStore, key: str) -> None:
    if isinstance(store, LocalObjectStore):
        path = Path(store.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(f".{path.name}.0123.partial").write_bytes(b"killed")
        return
    client = store.s3.get_client()
    upload = client.create_multipart_upload(Bucket=store.bucket, Key=key)
    client.upload_part(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"killed")
