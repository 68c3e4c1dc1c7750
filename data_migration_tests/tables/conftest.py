"""S3 for the table tests: moto's ThreadedMotoServer in a child process (../conftest.py's
`moto_process`), one fresh bucket per test.

Not the session's in-process moto (../conftest.py): deltalake 1.6.6 holds the GIL through some
of its S3 round trips (`DeltaTable.history()` here, measured: the request never reaches an
in-process moto, whose handler threads need the GIL, and times out after 180 s; delta-rs issues
#4402 and #4362), so a server in this process deadlocks against it. In production the store is
another process, as it is here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from data_migration.tables.naming import data_file_uri, partition_folder, split_uri

REGION = "us-east-1"
KEY = "testing"
STARTED = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Store:
    endpoint: str
    bucket: str
    fs: pafs.S3FileSystem
    client: object

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}"

    def write(self, uri: str, table: pa.Table) -> str:
        bucket, key = split_uri(uri)
        pq.write_table(table, f"{bucket}/{key}", filesystem=self.fs)
        return uri

    def put(self, uri: str, body: bytes = b"not ours") -> str:
        bucket, key = split_uri(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=body)  # type: ignore[attr-defined]
        return uri

    def keys(self, prefix: str) -> set[str]:
        bucket, key = split_uri(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)  # type: ignore[attr-defined]
        return {f"s3://{bucket}/{o['Key']}" for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def store(moto_process: str) -> Store:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3", endpoint_url=moto_process, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=KEY
    )
    client.create_bucket(Bucket=bucket)
    fs = pafs.S3FileSystem(endpoint_override=moto_process, scheme="http", access_key=KEY, secret_key=KEY, region=REGION)
    return Store(moto_process, bucket, fs, client)


def data_file(
    store: Store,
    location: str,
    table: pa.Table,
    run_id: str = "run-1",
    number: int = 0,
    partition: tuple[str, object] | None = None,
    started: dt.datetime = STARTED,
) -> str:
    """Write `table` as a run's data file where naming.py puts it; its URI."""
    folder = partition_folder(*partition) if partition else None
    return store.write(data_file_uri(location, run_id, started, number, folder), table)


def iceberg_catalog(tmp_path: Path, store: Store, kind: type | None = None) -> Any:
    """A SqlCatalog (or subclass `kind`) on SQLite in `tmp_path`, its warehouse in the bucket.
    s3.region is set: without it pyiceberg asks AWS itself for the bucket's region (seconds lost)."""
    from pyiceberg.catalog.sql import SqlCatalog

    return (kind or SqlCatalog)(
        "test",
        uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=f"{store.root}/warehouse",
        **{"s3.endpoint": store.endpoint, "s3.access-key-id": KEY, "s3.secret-access-key": KEY, "s3.region": REGION},
    )
