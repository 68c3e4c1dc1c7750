"""The `loads:` entries: each one checked into a `LoadSpec`, and the problems only the loads
together show (two loads of one table, a load that feeds its own source)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_migration.config.exports import ExportSpec
from data_migration.config.fields import FileType
from data_migration.config.freshness import FreshnessEntry, FreshnessSpec, parse_freshness
from data_migration.config.names import Identifier, SqlError, parse_object_name, read_tables
from data_migration.config.paths import s3_path_problem
from data_migration.config.problems import DAGSTER_NAME, describe, one_column


class LoadEntry(BaseModel):
    """One entry of `loads:` as written in the YAML."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    table: str = Field(description="The target table (db.schema.table allowed); also the asset's name.")
    from_: str | None = Field(
        default=None, alias="from", description="An export in this list: its last committed output is loaded."
    )
    s3_path: str | None = Field(
        default=None, description="Or an object, or a folder ending in '/', in the bucket (exactly one of the two)."
    )
    file_type: FileType | None = Field(default=None, description="With s3_path: parquet (the only one loaded).")
    mode: Literal["append", "replace", "merge"] = Field(
        description="replace (every row, in one INSERT OVERWRITE), append (files not loaded before), or merge "
        "(on `keys`)."
    )
    keys: list[str] | None = Field(default=None, description="merge only: the columns that identify a row.")
    create: Literal["if_missing", "never"] = Field(
        default="if_missing", description="if_missing: create the target with the files' exact types; never."
    )
    allow_empty: bool | None = Field(
        default=None,
        description="replace only: let a source of no rows empty a target that has rows (by default such a "
        "replace fails and leaves the target as it was).",
    )
    freshness: FreshnessEntry | None = Field(
        default=None, description="How late the last load may be before the UI warns or fails (as for exports)."
    )


LoadMode = Literal["append", "replace", "merge"]


@dataclass(frozen=True)
class LoadSpec:
    """One validated load: files in the bucket into a Snowflake table (loads/)."""

    index: int
    table: str  # the target as written in the YAML
    object_name: tuple[Identifier, ...]  # the target, case resolved as Snowflake resolves it
    asset_key_path: tuple[str, ...]
    mode: LoadMode
    create: Literal["if_missing", "never"]
    keys: tuple[Identifier, ...] = ()  # merge only
    # replace only: a source of no rows may empty a target that has rows (else the load fails).
    allow_empty: bool = False
    # Exactly one of: the export whose last committed output is loaded, or an object (or a folder
    # of parts, ending in '/') in the bucket.
    source: ExportSpec | None = None
    s3_path: str | None = None
    file_type: FileType = "parquet"
    source_path: str | None = None
    source_line: int | None = None
    freshness: FreshnessSpec | None = None  # not part of code_version: it changes no load

    @property
    def label(self) -> str:
        return f"loads[{self.index}] ({self.table})"

    @property
    def target_sql(self) -> str:
        return ".".join(part.quoted() for part in self.object_name)

    @property
    def code_version(self) -> str:
        digest = hashlib.sha256(
            "\x00".join(
                [
                    self.target_sql,
                    self.mode,
                    self.create,
                    ",".join(key.quoted() for key in self.keys),
                    self.source.code_version if self.source else f"{self.s3_path}:{self.file_type}",
                ]
            ).encode()
        ).hexdigest()
        return digest[:16]


def parse_load(
    index: int, raw: Any, exports: Sequence[ExportSpec], export_entries: int, problems: list[str]
) -> LoadSpec | None:
    """One `loads:` entry checked for types and meaning (`exports` are the valid exports)."""
    table_hint = raw.get("table") if isinstance(raw, dict) else None
    label = f"loads[{index}]" + (f" ({table_hint})" if isinstance(table_hint, str) else "")
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a mapping with at least `table`, `mode` and `from` or `s3_path`")
        return None
    before = len(problems)
    try:
        entry = LoadEntry.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors():
            field = ".".join(str(part) for part in detail["loc"])
            nested = detail["loc"][0] == "freshness" and len(detail["loc"]) > 1
            problems.append(f"{label}.{field}: {describe(detail, FreshnessEntry if nested else LoadEntry)}")
        return None

    object_name: tuple[Identifier, ...] = ()
    try:
        object_name = parse_object_name(entry.table)
    except SqlError as error:
        problems.append(f"{label}.table: {error}")
    for part in object_name:
        if not DAGSTER_NAME.match(part.written):
            problems.append(
                f"{label}.table: {part.written!r} cannot be a Dagster asset name (letters, digits and _ only)"
            )
    source: ExportSpec | None = None
    if (entry.from_ is None) == (entry.s3_path is None):
        problems.append(f"{label}: give exactly one of `from` (an export in this file) and `s3_path` (an object)")
    elif entry.from_ is not None:
        source = _load_source(label, entry, exports, export_entries, problems)
        if entry.file_type is not None:
            problems.append(f"{label}.file_type: comes from the export named by `from`; remove file_type")
    else:
        assert entry.s3_path is not None
        key = entry.s3_path
        folder = key.endswith("/")
        problem = s3_path_problem(key.rstrip("/") + ("/manifest.json" if folder else ""))
        if problem:
            problems.append(f"{label}.s3_path: {problem}")
    file_type = source.file_type if source else (entry.file_type or "parquet")
    if file_type != "parquet":
        problems.append(
            f"{label}.{'from' if source else 'file_type'}: loads read Parquet only (the type table's exact "
            f"types); {file_type} is not loaded yet: export as parquet to load it back"
        )
    keys: list[Identifier] = []
    if entry.mode == "merge" and not entry.keys:
        problems.append(f"{label}.keys: required for mode: merge (the columns that identify a row)")
    elif entry.mode != "merge" and entry.keys is not None:
        problems.append(f"{label}.keys: applies to mode: merge only, not {entry.mode}")
    for position, written in enumerate(entry.keys or []):
        column = one_column(written, f"{label}.keys[{position}]", problems)
        if column is not None:
            if column in keys:
                problems.append(f"{label}.keys[{position}]: {written!r} is given twice")
            keys.append(column)
    if entry.allow_empty is not None and entry.mode != "replace":
        problems.append(f"{label}.allow_empty: applies to mode: replace only, not {entry.mode}")
    freshness = None
    if entry.freshness is not None:
        freshness = parse_freshness(f"{label}.freshness", entry.freshness, problems)
    if len(problems) > before:
        return None
    return LoadSpec(
        index=index,
        table=entry.table,
        object_name=object_name,
        asset_key_path=tuple(part.written for part in object_name),
        mode=entry.mode,
        create=entry.create,
        keys=tuple(keys),
        allow_empty=bool(entry.allow_empty),
        source=source,
        s3_path=entry.s3_path,
        file_type=file_type,
        freshness=freshness,
    )


def _load_source(
    label: str, entry: LoadEntry, exports: Sequence[ExportSpec], export_entries: int, problems: list[str]
) -> ExportSpec | None:
    """The export a load's `from` names (by its table as written, case resolved as Snowflake's)."""
    assert entry.from_ is not None
    try:
        wanted = tuple(part.name for part in parse_object_name(entry.from_))
    except SqlError as error:
        problems.append(f"{label}.from: {error}")
        return None
    for spec in exports:
        if tuple(part.name for part in spec.object_name) == wanted:
            if spec.partition is not None:
                problems.append(
                    f"{label}.from: {spec.label} is partitioned; a load reads one committed output (load its "
                    "objects by s3_path instead)"
                )
                return None
            return spec
    if len(exports) == export_entries:  # an export with a problem of its own is reported there
        names = ", ".join(spec.table for spec in exports) or "none"
        problems.append(f"{label}.from: {entry.from_!r} is not an export in this file (exports: {names})")
    return None


def cross_load_problems(loads: Sequence[LoadSpec], exports: Sequence[ExportSpec]) -> list[str]:
    problems: list[str] = []
    names = {"/".join(spec.asset_key_path).lower(): spec.label for spec in exports}
    targets: dict[tuple[str, ...], str] = {}
    for load in loads:
        key = "/".join(load.asset_key_path).lower()
        if key in names:
            problems.append(f"{load.label}.table: same asset name as {names[key]}; each load needs its own table")
        names.setdefault(key, load.label)
        target = tuple(part.name for part in load.object_name)
        if target in targets:
            problems.append(f"{load.label}.table: {targets[target]} loads the same table")
        targets.setdefault(target, load.label)
    problems.extend(_cycle_problems(loads, exports))
    return problems


def _cycle_problems(loads: Sequence[LoadSpec], exports: Sequence[ExportSpec]) -> list[str]:
    """Loads that feed their own source: a load writes a table that an export reads, and that
    export leads (through loads' `from`) back to the load. Each run would export what the last
    one loaded, and a replace would overwrite the table under the export reading it."""
    readers: dict[int, list[ExportSpec]] = {}  # load index -> the exports that read its target
    for load in loads:
        target = tuple(part.name for part in load.object_name)
        readers[load.index] = [
            spec
            for spec in exports
            if any(
                _may_be_same(target, name)
                for name in ([tuple(p.name for p in spec.object_name)] if spec.query is None else read_tables(spec.sql))
            )
        ]
    fed_by: dict[int, list[LoadSpec]] = {}  # export index -> the loads reading from it
    for load in loads:
        if load.source is not None:
            fed_by.setdefault(load.source.index, []).append(load)

    problems = []
    for load in loads:
        # Follow load -> exports reading its target -> loads from those exports, back to `load`?
        seen: set[int] = set()
        pending = [load]
        found = None
        while pending and found is None:
            current = pending.pop()
            for spec in readers[current.index]:
                for following in fed_by.get(spec.index, []):
                    if following.index == load.index:
                        found = spec
                    elif following.index not in seen:
                        seen.add(following.index)
                        pending.append(following)
        if found is not None:
            problems.append(
                f"{load.label}.table: a cycle: {found.label} reads this table (or one loaded from it) and is this "
                "load's own source; a load must not write a table its source reads (if they are different tables, "
                "write both names in full: database.schema.table)"
            )
    return problems


def _may_be_same(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Whether two names could be the same table: the parts both give agree (an unqualified name
    resolves in the session's schema, which the config does not know)."""
    shorter = min(len(one), len(other))
    return one[-shorter:] == other[-shorter:]
