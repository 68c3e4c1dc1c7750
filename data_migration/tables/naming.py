"""Where this project writes a table's data files, and how it names them, so that its orphan sweep
finds its own files and nothing else.

    <location>/data/[<partition folder>/]dm-<started>-<run id>-<n>.parquet
    s3://lake/sales/orders/data/ORDER_DATE=2026-11-24/dm-20261124T120000123456Z-1a2b3c4d-00000.parquet

- `dm-` is a prefix neither pyiceberg (`00000-0-<uuid>.parquet`) nor delta-rs
  (`part-00000-<uuid>-c000.snappy.parquet`) nor Spark writes, so a sweep of `dm-` files never
  touches another writer's files;
- `<started>` is the run's start (UTC, to the microsecond, sortable), so a sweep can tell how old a
  file's run is from the name alone, without a listing's timestamps;
- `<run id>` (a Dagster run id, letters, digits and dashes) says which run wrote it, so a sweep can
  leave a run that may still commit alone and remove a finished run's leftovers;
- `<n>` numbers a run's files (five digits or more).

The partition folder is for people and for engines that prune by path (Iceberg and Delta readers
use the table's metadata): `<column>=<value>` with a value of letters, digits and `-_.:`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime

PREFIX = "dm-"
DATA_FOLDER = "data"
_STAMP = "%Y%m%dT%H%M%S%fZ"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_NAME = re.compile(r"dm-(\d{8}T\d{12}Z)-([A-Za-z0-9][A-Za-z0-9-]{0,63})-(\d{5,})\.parquet")
_FOLDER = re.compile(r"[A-Za-z0-9_]+=[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class DataFileName:
    started: datetime
    run_id: str
    number: int


def data_file_uri(
    location: str, run_id: str, started: datetime, number: int, partition_folder: str | None = None
) -> str:
    """The URI of a run's `number`th data file under the table's `location`."""
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: use letters, digits and dashes (at most 64, a Dagster run id fits)")
    if partition_folder is not None and not _FOLDER.fullmatch(partition_folder):
        raise ValueError(f"partition folder {partition_folder!r}: expected <column>=<value> of letters, digits, -_.:")
    if number < 0:
        raise ValueError(f"file number {number} is negative")
    name = f"{PREFIX}{started.astimezone(UTC):{_STAMP}}-{run_id}-{number:05d}.parquet"
    folder = data_folder(location) + (f"/{partition_folder}" if partition_folder else "")
    return f"{folder}/{name}"


def data_folder(location: str) -> str:
    return f"{location.rstrip('/')}/{DATA_FOLDER}"


def partition_folder(column: str, value: object) -> str | None:
    """`<column>=<value>` when both are safe in a path, else None (the files go straight in data/)."""
    folder = f"{column}={value}"
    return folder if _FOLDER.fullmatch(folder) else None


def parse_data_file(path: str) -> DataFileName | None:
    """What a data file's name says, or None when this project did not name it."""
    match = _NAME.fullmatch(posixpath.basename(path))
    if match is None:
        return None
    started = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
    return DataFileName(started, match[2], int(match[3]))


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
