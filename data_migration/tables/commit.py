"""What a commit of already-written data files is, whichever the table format: the write
(`TableWrite`: its mode, its files, its summary properties, the state it was planned on), its
result, its errors, the rule that says when a commit that lost to another writer may be redone,
and the bounded loop that redoes it (iceberg.py and delta.py supply the format's side).

When it is safe to redo a commit after another writer committed first (one conflict):

- append: always, the new files add to whatever is there; except when the write carries the
  increment's mark (`MARK`) and the table's mark moved since the write's base: another increment
  committed rows after the same mark, and appending too would double them;
- replace_partition: when the partition's live files are the same as at the base (another writer
  appended to or replaced other partitions only); otherwise this run would overwrite rows it never
  saw, possibly newer than its own, so it fails and a rerun reads the source again;
- replace (all rows): when the table's live files are the same as at the base (the other commit
  changed only metadata: properties, expired snapshots).

The base is the table as the run found it when it began (`Base`, from the format's `begin()`),
or, when the caller gives none, as the first attempt found it.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

log = logging.getLogger(__name__)
MARK = "data-migration.mark"  # an increment's high-water mark, readable back with read_mark
COMMIT_ID = "data-migration.commit-id"  # one per commit call: finds a commit whose answer was lost
WRITE_MODE = "data-migration.write"
RESERVED = frozenset({COMMIT_ID, WRITE_MODE})
RETRIES = 4
R = TypeVar("R")


class WriteMode(StrEnum):
    APPEND = "append"
    REPLACE = "replace"  # all rows
    REPLACE_PARTITION = "replace_partition"  # the rows of one partition


class TableCommitError(RuntimeError):
    """A commit that did not happen; the message names the table and what to do."""


class ConcurrentCommitError(TableCommitError):
    """Another writer committed first, and redoing this commit on top would lose or double rows
    (or it kept committing first, more times than the retries allow)."""


class DataFileError(TableCommitError):
    """A data file cannot be committed: missing, not Parquet, another schema, several partition values."""


@dataclass(frozen=True)
class Base:
    """The table as a run found it when it began: its version (Iceberg snapshot id, Delta table
    version; None when the table or its first snapshot did not exist) and its mark."""

    version: int | None
    mark: str | None = None


@dataclass(frozen=True)
class TableWrite:
    """One commit: `files` (URIs of Parquet files already written under the table's location,
    each holding one partition value) committed as `mode`. `partition_value` (replace_partition
    only) is a value of the partition column inside the partition replaced: a date or timestamp
    for a time transform, the value itself for identity. `properties` go into the snapshot
    summary (Iceberg) or the commit info (Delta)."""

    mode: WriteMode
    files: tuple[str, ...]
    partition_value: object = None
    properties: Mapping[str, str] = field(default_factory=dict)
    base: Base | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", WriteMode(self.mode))
        object.__setattr__(self, "files", tuple(self.files))
        if len(set(self.files)) != len(self.files):
            raise ValueError("a write lists the same file twice")
        if self.mode is WriteMode.REPLACE_PARTITION and self.partition_value is None:
            raise ValueError("replace_partition needs the partition_value it replaces")
        if self.mode is not WriteMode.REPLACE_PARTITION and self.partition_value is not None:
            raise ValueError(f"{self.mode}: partition_value is only for replace_partition")
        for key, value in self.properties.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"property {key!r}: keys and values must be strings")
            if key in RESERVED:
                raise ValueError(f"property {key!r} is set by the commit itself")


@dataclass(frozen=True)
class CommitResult:
    table_format: str  # "iceberg" | "delta"
    version: int  # the new snapshot id (Iceberg) or table version (Delta)
    metadata_location: str  # the metadata.json (Iceberg) or the log entry (Delta) of the commit
    added_files: int
    added_bytes: int
    added_records: int
    total_records: int | None  # None where the table's files carry no row counts
    skipped_empty: tuple[str, ...]  # files without rows, not committed (the orphan sweep removes them)
    attempts: int
    commit_id: str


def new_commit_id() -> str:
    return uuid.uuid4().hex


def summary_properties(write: TableWrite, commit_id: str) -> dict[str, str]:
    return {**write.properties, COMMIT_ID: commit_id, WRITE_MODE: str(write.mode)}


def check_safe(
    table: str,
    write: TableWrite,
    base: Base,
    now: Base,
    files_at: Callable[[int | None], frozenset[str]],
) -> None:
    """Raise ConcurrentCommitError unless `write`, planned on `base`, may commit on `now`.
    `files_at(version)` gives the live files the write replaces (all, or its partition's)."""
    if write.mode is WriteMode.APPEND:
        if MARK in write.properties and now.mark != base.mark:
            raise ConcurrentCommitError(
                f"{table}: another increment committed while this one ran (the mark moved from {base.mark!r} to "
                f"{now.mark!r}); appending too would double its rows: rerun the increment from the new mark"
            )
        return
    if now.version == base.version:
        return
    before, after = files_at(base.version), files_at(now.version)
    if before != after:
        scope = "the partition" if write.mode is WriteMode.REPLACE_PARTITION else "the table"
        raise ConcurrentCommitError(
            f"{table}: another writer changed {scope} this run replaces after it began (version {base.version} -> "
            f"{now.version}: {len(after - before)} file(s) added, {len(before - after)} removed); committing now "
            "would overwrite rows this run never read: rerun it"
        )


def with_retries(
    table: str,
    attempt: Callable[[int], R],
    lost_race: Callable[[BaseException], bool],
    retries: int = RETRIES,
    first_wait_s: float = 0.05,
) -> R:
    """`attempt(n)` (n = 1, 2, ...) until it returns; an error that `lost_race` says is another
    writer committing first is retried up to `retries` times, with exponential backoff and jitter.
    The attempt itself reloads the table and checks the commit is still safe (check_safe)."""
    for number in range(1, retries + 2):
        try:
            return attempt(number)
        except Exception as error:
            if not lost_race(error):
                raise
            if number > retries:
                raise ConcurrentCommitError(
                    f"{table}: another writer committed first {number} times in a row; giving up "
                    f"({type(error).__name__}: {error})"
                ) from error
            wait = min(first_wait_s * 2 ** (number - 1), 5.0)
            log.info(f"{table}: another writer committed first ({type(error).__name__}); retrying in {wait:.2f} s")
            time.sleep(wait + random.uniform(0, wait / 2))
    raise AssertionError("unreachable")
