"""The orphan sweep both formats share: delete the data files this project named (naming.py)
under a table's `data/` folder that the table's metadata no longer lists, once their run is over.

A file is deleted only when all of these hold:
- its name parses as ours (`dm-<started>-<run id>-<n>.parquet`): another writer's files are never touched;
- no snapshot or version the table still holds lists it (the caller's `listed`, read *after* the
  folder was listed, so a file committed between the two is seen as listed);
- its run is not one `leave_alone` protects (a set of run ids, or a predicate on the parsed name):
  a run still going may commit the file any moment;
- its run started more than `min_age` ago: a run that began after the caller built its set of
  running runs is not in that set.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection

import pyarrow.fs as pafs

from data_migration.tables.naming import DataFileName, parse_data_file

log = logging.getLogger(__name__)
LeaveAlone = Collection[str] | Callable[[DataFileName], bool]


def sweep(
    folder_uri: str,
    filesystem: pafs.FileSystem,
    listed: Callable[[], frozenset[str]],
    leave_alone: LeaveAlone,
    min_age: dt.timedelta,
) -> list[str]:
    """Delete the orphans under `folder_uri` (see the module docstring); the URIs deleted."""
    protect = leave_alone if callable(leave_alone) else _run_in(frozenset(leave_alone))
    scheme, path = _split(folder_uri)
    found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    cutoff = dt.datetime.now(dt.UTC) - min_age
    candidates = []
    for info in found:
        if info.type != pafs.FileType.File or (name := parse_data_file(info.path)) is None:
            continue
        if name.started > cutoff or protect(name):
            continue
        candidates.append(f"{scheme}{info.path}")
    still_listed = listed()
    deleted = []
    for uri in candidates:
        if uri in still_listed:
            continue
        filesystem.delete_file(_split(uri)[1])
        deleted.append(uri)
    if deleted:
        log.info(f"{folder_uri}: deleted {len(deleted)} orphan data file(s) of finished runs")
    return deleted


def _run_in(run_ids: frozenset[str]) -> Callable[[DataFileName], bool]:
    return lambda name: name.run_id in run_ids


def _split(uri: str) -> tuple[str, str]:
    """(scheme prefix, path as pyarrow's filesystems name it)."""
    for scheme in ("s3://", "file://"):
        if uri.startswith(scheme):
            return scheme, uri[len(scheme) :].rstrip("/")
    return "", uri.rstrip("/")
