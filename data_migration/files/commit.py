"""The commit of a split export's output: one manifest that lists every part, written last
with a conditional write on the version the run read when it began, so that of two runs of one
export exactly one commits (files/layout.py writes the parts; an increment and an unload commit
through the same functions).

Owns the guard that nothing a committed manifest lists is ever deleted: a failed commit reads the
manifest back before removing anything (a commit whose answer was lost is committed), and the
cleanup after a commit removes only files of earlier generations that its manifest no longer
lists. A store that ignores conditional writes is refused here, before a generation begins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from data_migration.config.paths import split_prefix
from data_migration.files.storage import ConcurrentWriteError, ObjectStore, StoredObject

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "data-migration/manifest@1"
MANIFEST_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class FilePart:
    key: str
    uri: str
    rows: int
    size: int
    sha256: str | None  # None for a file the project did not write (Snowflake's unload)
    checksum: str | None = None  # the CRC32 the store keeps (StoredObject.checksum)


@dataclass(frozen=True)
class WriteResult:
    uri: str  # the object, or the manifest of a split export
    rows: int
    size: int  # bytes of data (all parts, not counting the manifest)
    sha256: str  # of the object, or of the manifest's bytes
    files: tuple[FilePart, ...]
    stale_removed: int = 0  # unfinished uploads and superseded parts removed after the commit
    manifest: dict[str, Any] | None = None


@dataclass(frozen=True)
class Base:
    """What a split write builds on: the version of the manifest it replaces (None: there was
    none), the file entries of that manifest it keeps, and top-level fields it sets."""

    version: str | None
    files: tuple[dict[str, Any], ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)


def manifest_key(key: str) -> str:
    return f"{split_prefix(key)}/{MANIFEST_NAME}"


def new_generation(now: datetime | None = None) -> str:
    """Sortable by start time, unique per run: 20261124T120000123456Z-1a2b3c4d."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def _generation_time(generation: str) -> datetime | None:
    try:
        return datetime.strptime(generation.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def begin_generation(store: ObjectStore, key: str, base: Base | None = None) -> tuple[Base, datetime, str]:
    """The manifest version a run replaces (read now unless `base` says), its start time and its
    generation folder's name.

    The version is read before the start time is taken, so that a run that cleans up
    generations begun before its own (see _remove_superseded) only ever removes runs whose
    commit must fail.
    """
    store.require_conditional_writes(split_prefix(key))
    if base is None:
        found = store.read_versioned(manifest_key(key))
        base = Base(found[1] if found else None)
    started = datetime.now(UTC)
    return base, started, new_generation(started)


def commit_parts(
    store: ObjectStore,
    key: str,
    base: Base,
    generation: str,
    started: datetime,
    parts: list[FilePart],
    file_type: str,
    compression: str | None,
    describe: Callable[[], dict[str, Any]] | None = None,
) -> WriteResult:
    """Commit this run's `parts` (files of its generation) and `base`'s files in one manifest,
    written only if the manifest is still at `base.version`; then remove what no manifest lists.

    When the write fails, the manifest is read back first: a write whose answer was lost (S3
    applied it, the connection dropped, botocore's retry got 412) is committed, and the run goes
    on as committed. Otherwise the parts are removed, but for any that the manifest now in place
    lists, and the previous manifest stands; when the manifest cannot be read back, nothing is
    removed (a later run's cleanup removes what no manifest lists)."""
    prefix, manifest_at = split_prefix(key), manifest_key(key)
    try:
        manifest = _manifest(base, generation, parts, prefix, file_type, compression, describe)
    except BaseException as error:
        abandon(store, manifest_at, base, parts, error)
        raise
    body = (json.dumps(manifest, indent=1) + "\n").encode()
    try:
        committed = store.put_if_unchanged(manifest_at, body, MANIFEST_CONTENT_TYPE, base.version)
    except BaseException as error:
        now = _quietly(lambda: store.read_versioned(manifest_at, denied_is_absent=False))
        if now is _UNKNOWN or not _lists_all(now, prefix, parts, body):
            abandon(store, manifest_at, base, parts, error, now)
            raise
        if not isinstance(error, Exception):  # interrupted, but committed: nothing to undo
            raise
        log.warning(
            f"{store.uri(manifest_at)}: the answer to the commit was lost ({type(error).__name__}: {error}); "
            "the manifest read back lists this run's files: committed"
        )
        committed = StoredObject(store.uri(manifest_at), len(body), hashlib.sha256(body).hexdigest())
    try:
        listed = {f"{prefix}/{entry['path']}" for entry in manifest["files"]}
        stale = _remove_superseded(store, prefix, generation, started, manifest_at, listed)
    except Exception as error:  # noqa: BLE001 - the export is committed; leftovers are harmless
        log.warning(f"{store.uri(prefix)}: committed, but old files could not be cleaned up: {error}")
        stale = 0
    return WriteResult(
        committed.uri, manifest["row_count"], manifest["size_bytes"], committed.sha256, tuple(parts), stale, manifest
    )


def _manifest(
    base: Base,
    generation: str,
    parts: list[FilePart],
    prefix: str,
    file_type: str,
    compression: str | None,
    describe: Callable[[], dict[str, Any]] | None,
) -> dict[str, Any]:
    """The manifest a commit writes: `base`'s files and this run's `parts`, with their totals."""
    files = [
        *base.files,
        *(
            {
                "path": posixpath.relpath(part.key, prefix),
                "rows": part.rows,
                "size_bytes": part.size,
                **({"sha256": part.sha256} if part.sha256 else {}),
                **({"crc32": part.checksum} if part.checksum else {}),
            }
            for part in parts
        ),
    ]
    return {
        "format": MANIFEST_FORMAT,
        "generation": generation,
        "created_at": datetime.now(UTC).isoformat(),
        "file_type": file_type,
        "compression": compression,
        **(describe() if describe else {}),
        **base.fields,
        "row_count": sum(int(entry["rows"]) for entry in files),
        "size_bytes": sum(int(entry["size_bytes"]) for entry in files),
        "files": files,
    }


def _listed(found: tuple[bytes, str] | None, prefix: str) -> set[str]:
    """The keys a manifest's bytes list (none for no manifest, or one that is not valid)."""
    if found is None:
        return set()
    try:
        return {f"{prefix}/{entry['path']}" for entry in json.loads(found[0])["files"]}
    except (ValueError, KeyError, TypeError):
        return set()


def _lists_all(found: tuple[bytes, str] | None, prefix: str, parts: list[FilePart], body: bytes) -> bool:
    """Whether the manifest read back (`found`) is the one this run wrote, or one a later run
    built on it (an increment keeps the earlier parts): either way this run's commit landed."""
    if found is None:
        return False
    if found[0] == body:
        return True
    return bool(parts) and {part.key for part in parts} <= _listed(found, prefix)


_UNKNOWN: Any = object()  # a read that failed
_READ: Any = object()  # _abandon's default: read the manifest in place itself


def abandon(
    store: ObjectStore,
    manifest_at: str,
    base: Base,
    parts: list[FilePart],
    error: BaseException,
    now: Any = _READ,
) -> None:
    """A run failed before its commit, or its commit did not land: remove its finished parts
    (best effort), and say so when another run's commit is why.

    Before a commit is tried (`now` not given) no manifest can list this generation's files.
    After a failed commit, `now` is the manifest as the caller read it back: a part it lists is
    never removed, and when it could not be read (_UNKNOWN) nothing is."""
    if now is _READ:
        store.delete_keys([part.key for part in parts])
        now = _quietly(lambda: store.read_versioned(manifest_at))
    elif now is _UNKNOWN:
        log.warning(
            f"{store.uri(manifest_at)}: could not read the manifest back after a failed commit; this run's "
            f"{len(parts)} file(s) are left in place (a later run removes them if no manifest lists them)"
        )
    else:
        listed = _listed(now, posixpath.dirname(manifest_at))
        store.delete_keys([part.key for part in parts if part.key not in listed])
    if not isinstance(error, ConcurrentWriteError) and isinstance(error, Exception):
        if now is not _UNKNOWN and (now[1] if now else None) != base.version:
            # Another run committed meanwhile and cleaned up this run's files under it.
            raise ConcurrentWriteError(
                f"{store.uri(manifest_at)}: another run of this export committed while this one "
                f"was writing ({type(error).__name__}: {error})"
            ) from error


def _quietly(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # noqa: BLE001 - only used to explain a failure already being raised
        return _UNKNOWN


def _remove_superseded(
    store: ObjectStore, prefix: str, generation: str, started: datetime, manifest_at: str, listed: set[str]
) -> int:
    """After a commit: files of generations begun before this one that the committed manifest
    no longer lists (an increment's manifest keeps earlier parts), and uploads of killed runs.

    Generations begun after this run started belong to runs still writing; they are left alone
    (their commit will fail or supersede this one).
    """
    removed = store.abort_uploads_under(f"{prefix}/", started)
    keys = store.list_keys(f"{prefix}/") or []
    old = []
    for key in keys:
        if key == manifest_at or key in listed:
            continue
        folder = posixpath.relpath(key, prefix).split("/", 1)[0]
        begun = _generation_time(folder)
        if folder != generation and begun is not None and begun < started:
            old.append(key)
    return removed + store.delete_keys(old)
