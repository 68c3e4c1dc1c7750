"""The export list: YAML in, typed `ExportSpec`s (and `LoadSpec`s) out. The only module that
reads the YAML.

Every problem is reported before any network call, all at once, each naming the file, the entry
(its list, index and table) and the field, e.g.
    config/export_tables.yaml: exports[2] (ORDERS).file_type: 'xlsx' is not one of parquet, csv, json
    config/export_tables.yaml: loads[0] (ANALYTICS.STAGING.ORDERS_COPY).keys: required for mode: merge
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError

from data_migration.increments import IncrementSpec, parse_initial, parse_lookback
from data_migration.layout import split_prefix
from data_migration.partitions import PLACEHOLDER, SAMPLE_KEY, Granularity, PartitionSpec, parse_moment
from data_migration.sql import (
    Identifier,
    SqlError,
    parse_object_name,
    read_tables,
    select_all_from,
    validate_read_only_query,
)

FileType = Literal["parquet", "csv", "json"]
FILE_TYPES: tuple[str, ...] = ("parquet", "csv", "json")
# File name endings that clearly mean one of our formats; an s3_path ending in another one of
# these than its file_type says is almost certainly a mistake.
_EXTENSIONS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json"}
_DAGSTER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
MAX_S3_KEY_BYTES = 1024


class ConfigError(ValueError):
    """The export list is unusable; `problems` holds one line per problem found."""

    def __init__(self, path: Path | str, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{self.path}: {p}" for p in self.problems]
        super().__init__(
            f"{len(lines)} problem(s) in the export list:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
        )


class _PartitionEntry(BaseModel):
    """The `partition:` mapping of an entry; start and end are checked by parse_moment."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    column: str
    granularity: Granularity
    start: Any
    end: Any = None
    lookback: NonNegativeInt = 0


class _IncrementalEntry(BaseModel):
    """The `incremental:` mapping of an entry; initial and lookback are checked by increments.py."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cursor: str
    initial: Any = None
    lookback: Any = None


class _ExportEntry(BaseModel):
    """One entry as written in the YAML; strict, so a number is not silently taken as a path."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    table: str
    s3_path: str
    file_type: FileType = "parquet"
    query: str | None = None
    schedule: str | None = None
    csv_escape_formulas: bool | None = None
    compression: Literal["snappy", "zstd", "gzip", "none"] | None = None
    json_decimals: Literal["string", "number"] | None = None
    verify: Literal["metadata", "full"] | None = None
    max_rows_per_file: PositiveInt | None = None
    max_file_size_mb: PositiveFloat | PositiveInt | None = None
    row_group_rows: PositiveInt | None = None
    partition: _PartitionEntry | None = None
    incremental: _IncrementalEntry | None = None
    method: Literal["stream", "unload"] | None = None


class _LoadEntry(BaseModel):
    """One entry of `loads:` as written in the YAML."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    table: str
    from_: str | None = Field(default=None, alias="from")
    s3_path: str | None = None
    file_type: FileType | None = None
    mode: Literal["append", "replace", "merge"]
    keys: list[str] | None = None
    create: Literal["if_missing", "never"] = "if_missing"


# Parquet compresses inside the file; CSV and JSON Lines can be gzipped as a whole (.gz).
COMPRESSION = {"parquet": ("snappy", "zstd", "gzip", "none"), "csv": ("none", "gzip"), "json": ("none", "gzip")}


@dataclass(frozen=True)
class ExportSpec:
    """One validated export: everything after config.py works on these."""

    index: int
    table: str  # as written in the YAML
    object_name: tuple[Identifier, ...]  # the table, case resolved as Snowflake resolves it
    asset_key_path: tuple[str, ...]
    s3_path: str
    file_type: FileType
    query: str | None  # as written (minus a trailing semicolon); None means the whole table
    sql: str  # exactly what is sent to Snowflake
    schedule: str | None
    # Passed to the format's writer, e.g. {"escape_formulas": True} for csv.
    format_options: tuple[tuple[str, Any], ...] = ()
    # Whole-file gzip around a csv or json export (its s3_path ends in .gz); parquet compresses
    # inside the file through format_options instead.
    gzip: bool = False
    # Split output (layout.py): parts of at most this many rows / bytes, and a manifest.
    max_rows_per_file: int | None = None
    max_file_bytes: int | None = None
    # Where the entry is written (the list's path, and the line its entry starts on), so the UI's
    # source link of the asset opens it. Not part of code_version: moving an entry changes nothing.
    source_path: str | None = None
    source_line: int | None = None
    # How the asset checks prove what landed: "metadata" (size, CRC32, Parquet footer) or "full"
    # (download and parse every row). Not part of code_version: it changes no output.
    verify: Literal["metadata", "full"] = "metadata"
    # Time-partitioned (partitions.py): one object per partition, `{partition}` in s3_path.
    partition: PartitionSpec | None = None
    # Incremental by cursor (increments.py): parts and a manifest that grow run by run.
    incremental: IncrementSpec | None = None
    # Who writes the files: the project, from the streamed result ("stream"), or Snowflake's own
    # COPY INTO a stage ("unload", unload.py), always as parts and a manifest.
    method: Literal["stream", "unload"] = "stream"

    @property
    def split(self) -> dict[str, int | None] | None:
        """Limits per part when the export is written as parts and a manifest (an incremental or
        unloaded export always is, with or without limits); None for one object."""
        if (
            self.max_rows_per_file is None
            and self.max_file_bytes is None
            and self.incremental is None
            and self.method == "stream"
        ):
            return None
        return {"max_rows": self.max_rows_per_file, "max_bytes": self.max_file_bytes}

    @property
    def output_prefix(self) -> str | None:
        """The folder of a split export's parts and manifest; None for a single object."""
        return split_prefix(self.s3_path) if self.split else None

    @property
    def label(self) -> str:
        return f"exports[{self.index}] ({self.table})"

    @property
    def code_version(self) -> str:
        """Changes whenever what the export produces could change."""
        digest = hashlib.sha256(
            "\x00".join(
                [
                    self.sql,
                    self.s3_path,
                    self.file_type,
                    repr(self.format_options),
                    str(self.gzip),
                    repr(self.split),
                    *([repr(self.partition)] if self.partition else []),
                    *([repr(self.incremental)] if self.incremental else []),
                    *([self.method] if self.method != "stream" else []),
                ]
            ).encode()
        ).hexdigest()
        return digest[:16]


LoadMode = Literal["append", "replace", "merge"]


@dataclass(frozen=True)
class LoadSpec:
    """One validated load: files in the bucket into a Snowflake table (loads.py)."""

    index: int
    table: str  # the target as written in the YAML
    object_name: tuple[Identifier, ...]  # the target, case resolved as Snowflake resolves it
    asset_key_path: tuple[str, ...]
    mode: LoadMode
    create: Literal["if_missing", "never"]
    keys: tuple[Identifier, ...] = ()  # merge only
    # Exactly one of: the export whose last committed output is loaded, or an object (or a folder
    # of parts, ending in '/') in the bucket.
    source: ExportSpec | None = None
    s3_path: str | None = None
    file_type: FileType = "parquet"
    source_path: str | None = None
    source_line: int | None = None

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


@dataclass(frozen=True)
class ExportsConfig:
    path: Path
    exports: tuple[ExportSpec, ...]
    loads: tuple[LoadSpec, ...] = ()

    def schedules(self) -> dict[str, tuple[ExportSpec, ...]]:
        """Cron string -> the unpartitioned exports on it, in file order (a partitioned export
        gets a schedule of its own, for its partitions)."""
        by_cron: dict[str, list[ExportSpec]] = {}
        for spec in self.exports:
            if spec.schedule and spec.partition is None:
                by_cron.setdefault(spec.schedule, []).append(spec)
        return {cron: tuple(specs) for cron, specs in by_cron.items()}


# libyaml's safe loader when PyYAML has it (several times faster on large lists), else the
# pure-Python one: the same safe subset of YAML either way.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """safe_load, but a key given twice in one mapping is an error, not a silent overwrite."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping", mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_exports(path: Path | str) -> ExportsConfig:
    """Read and validate the export list at `path`; raise ConfigError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, [f"cannot be read: {error}"]) from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(path, [f"{where}invalid YAML: {problem}"]) from None
    return parse_exports(document, path, _entry_lines(text), _entry_lines(text, "loads"))


def _entry_lines(text: str, section: str = "exports") -> list[int]:
    """The line (1-based) each item of a top-level list starts on, from YAML's node tree."""
    root = yaml.compose(text, Loader=_SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == section and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def parse_exports(
    document: Any, path: Path | str, lines: Sequence[int] = (), load_lines: Sequence[int] = ()
) -> ExportsConfig:
    """Validate an already-parsed YAML document (see load_exports); `lines` and `load_lines` are
    where its entries start, when known."""
    path = Path(path)
    if not isinstance(document, dict):
        raise ConfigError(path, ["must be a mapping with an `exports:` list"])
    unknown = sorted(str(k) for k in document if k not in ("exports", "loads"))
    if unknown:
        raise ConfigError(
            path, [f"unknown top-level key(s): {', '.join(unknown)}; only `exports` and `loads` are allowed"]
        )
    entries = document.get("exports")
    load_entries = document.get("loads")
    if load_entries is not None and not isinstance(load_entries, list):
        raise ConfigError(path, ["loads: must be a list of loads"])
    if not (isinstance(entries, list) and entries) and not (entries in (None, []) and load_entries):
        raise ConfigError(path, ["exports: must be a non-empty list of exports"])

    problems: list[str] = []
    specs: list[ExportSpec] = []
    for index, raw in enumerate(entries or []):
        spec = _parse_entry(index, raw, problems)
        if spec is not None:
            line = lines[index] if index < len(lines) else None
            specs.append(replace(spec, source_path=str(path.resolve()), source_line=line))
    problems.extend(_cross_entry_problems(specs))
    loads: list[LoadSpec] = []
    for index, raw in enumerate(load_entries or []):
        load = _parse_load(index, raw, specs, len(entries or []), problems)
        if load is not None:
            line = load_lines[index] if index < len(load_lines) else None
            loads.append(replace(load, source_path=str(path.resolve()), source_line=line))
    problems.extend(_cross_load_problems(loads, specs))
    if problems:
        raise ConfigError(path, problems)
    return ExportsConfig(path=path, exports=tuple(specs), loads=tuple(loads))


def _parse_load(
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
        entry = _LoadEntry.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors():
            field = ".".join(str(part) for part in detail["loc"])
            problems.append(f"{label}.{field}: {_describe(detail, _LoadEntry)}")
        return None

    object_name: tuple[Identifier, ...] = ()
    try:
        object_name = parse_object_name(entry.table)
    except SqlError as error:
        problems.append(f"{label}.table: {error}")
    for part in object_name:
        if not _DAGSTER_NAME.match(part.written):
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
        column = _one_column(written, f"{label}.keys[{position}]", problems)
        if column is not None:
            if column in keys:
                problems.append(f"{label}.keys[{position}]: {written!r} is given twice")
            keys.append(column)
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
        source=source,
        s3_path=entry.s3_path,
        file_type=file_type,
    )


def _load_source(
    label: str, entry: _LoadEntry, exports: Sequence[ExportSpec], export_entries: int, problems: list[str]
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


def _cross_load_problems(loads: Sequence[LoadSpec], exports: Sequence[ExportSpec]) -> list[str]:
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
    one loaded, and a replace would swap the table from under the export reading it."""
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


def _parse_entry(index: int, raw: Any, problems: list[str]) -> ExportSpec | None:
    table_hint = raw.get("table") if isinstance(raw, dict) else None
    label = f"exports[{index}]" + (f" ({table_hint})" if isinstance(table_hint, str) else "")
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a mapping with at least `table` and `s3_path`")
        return None
    before = len(problems)
    entry: _ExportEntry | None = None
    try:
        entry = _ExportEntry.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors():
            field = ".".join(str(part) for part in detail["loc"])
            problems.append(f"{label}.{field}: {_describe(detail)}")
    # Check the meaning of every field that has the right type, so that one pass over the file
    # reports everything wrong with an entry, not one problem per attempt.
    bad_types = {problem.split(":", 1)[0].removeprefix(f"{label}.") for problem in problems[before:]}

    def valid(name: str) -> Any:
        value = getattr(entry, name) if entry else raw.get(name)
        return None if name in bad_types or not isinstance(value, str) else value

    table, s3_path, query, schedule = valid("table"), valid("s3_path"), valid("query"), valid("schedule")
    file_type = (
        entry.file_type if entry else (raw.get("file_type", "parquet") if "file_type" not in bad_types else None)
    )

    object_name: tuple[Identifier, ...] = ()
    if table is not None:
        try:
            object_name = parse_object_name(table)
        except SqlError as error:
            problems.append(f"{label}.table: {error}")
    asset_key_path = tuple(part.written for part in object_name)
    for part in asset_key_path:
        if not _DAGSTER_NAME.match(part):
            problems.append(
                f"{label}.table: {part!r} cannot be a Dagster asset name "
                "(letters, digits and _ only); export such a table with a `query` and a plain `table` name"
            )

    partition = _parse_partition(label, entry, problems)
    incremental = _parse_incremental(label, entry, problems)
    if entry is not None and entry.partition is not None and entry.incremental is not None:
        problems.append(
            f"{label}.incremental: an export is either partitioned or incremental, not both; remove one of "
            "`partition` and `incremental`"
        )
    compression = entry.compression if entry else None
    if s3_path is not None:
        has_placeholder = PLACEHOLDER in s3_path
        if has_placeholder and "partition" not in raw:
            problems.append(f"{label}.s3_path: {s3_path!r} contains {PLACEHOLDER} but the export has no `partition:`")
        elif not has_placeholder and "partition" in raw:
            problems.append(
                f"{label}.s3_path: a partitioned export's s3_path must contain {PLACEHOLDER}, which is replaced "
                f"by each partition's key (e.g. exports/orders/date={PLACEHOLDER}/data.parquet)"
            )
        s3_problem = s3_path_problem(s3_path.replace(PLACEHOLDER, SAMPLE_KEY))
        stem, suffix = posixpath.splitext(s3_path.lower())
        if suffix == ".gz":
            if file_type in ("csv", "json") and compression != "gzip":
                problems.append(f"{label}.s3_path: {s3_path!r} ends in .gz; add `compression: gzip` or drop .gz")
            suffix = posixpath.splitext(stem)[1]
        elif compression == "gzip" and file_type in ("csv", "json"):
            problems.append(f"{label}.s3_path: {s3_path!r} must end in .gz when compression is gzip (e.g. data.csv.gz)")
        if s3_problem:
            problems.append(f"{label}.s3_path: {s3_problem}")
        elif file_type and suffix in _EXTENSIONS and _EXTENSIONS[suffix] != file_type:
            problems.append(
                f"{label}.s3_path: {s3_path!r} ends in {suffix!r} but file_type is "
                f"{file_type!r}; change one so that they agree"
            )

    sql = select_all_from(object_name) if object_name else ""
    if query is not None:
        try:
            query = sql = validate_read_only_query(query)
        except SqlError as error:
            problems.append(f"{label}.query: {error}")

    if schedule is not None and not _valid_cron(schedule):
        problems.append(
            f"{label}.schedule: {schedule!r} is not a valid cron string "
            "(five fields, e.g. '0 6 * * *' for 06:00 UTC daily)"
        )
    if entry is not None and compression is not None and compression not in COMPRESSION[entry.file_type]:
        problems.append(
            f"{label}.compression: {compression!r} does not apply to {entry.file_type}; "
            f"use one of {', '.join(COMPRESSION[entry.file_type])}"
        )
    if entry is not None and entry.csv_escape_formulas is not None and entry.file_type != "csv":
        problems.append(f"{label}.csv_escape_formulas: applies to file_type csv only, not {entry.file_type!r}")
    if entry is not None and entry.json_decimals is not None and entry.file_type != "json":
        problems.append(f"{label}.json_decimals: applies to file_type json only, not {entry.file_type!r}")
    if entry is not None and entry.row_group_rows is not None and entry.file_type != "parquet":
        problems.append(f"{label}.row_group_rows: applies to file_type parquet only, not {entry.file_type!r}")
    if entry is not None and entry.max_file_size_mb is not None and entry.max_file_size_mb < 1:
        problems.append(f"{label}.max_file_size_mb: {entry.max_file_size_mb!r} is below the minimum of 1 (MB)")
    if entry is not None and entry.method == "unload":
        problems.extend(f"{label}.{problem}" for problem in _unload_problems(entry))
    if len(problems) > before or entry is None:
        return None
    format_options: tuple[tuple[str, Any], ...] = ()
    if entry.file_type == "csv":
        # On unless turned off: spreadsheet formula injection (OWASP ASVS V1.2.10).
        format_options = (("escape_formulas", entry.csv_escape_formulas is not False),)
    if entry.file_type == "json":
        # Exact strings unless asked for: most JSON readers turn a number into a double.
        format_options = (("decimals", entry.json_decimals or "string"),)
    if entry.file_type == "parquet":
        format_options = (("compression", entry.compression or "snappy"),)
        if entry.row_group_rows is not None:
            format_options += (("row_group_rows", entry.row_group_rows),)
    return ExportSpec(
        index=index,
        table=entry.table,
        object_name=object_name,
        asset_key_path=asset_key_path,
        s3_path=entry.s3_path,
        file_type=entry.file_type,
        query=query,
        sql=sql,
        schedule=entry.schedule,
        format_options=format_options,
        gzip=entry.file_type in ("csv", "json") and entry.compression == "gzip",
        max_rows_per_file=entry.max_rows_per_file,
        max_file_bytes=None if entry.max_file_size_mb is None else int(entry.max_file_size_mb * 1_000_000),
        verify=entry.verify or "metadata",
        partition=partition,
        incremental=incremental,
        method=entry.method or "stream",
    )


def _unload_problems(entry: _ExportEntry) -> list[str]:
    """What `method: unload` (Snowflake's COPY INTO a stage) cannot do, as `field: why` lines."""
    problems = []
    if entry.file_type != "parquet":
        problems.append(
            f"method: unload writes Parquet only (Snowflake's CSV and JSON unloads write other text "
            f"than this project's type table); use method: stream for {entry.file_type}"
        )
    if entry.compression not in (None, "snappy", "none"):
        problems.append(
            f"compression: {entry.compression!r} is not one Snowflake unloads Parquet with; use snappy or none"
        )
    for name in ("max_rows_per_file", "row_group_rows"):
        if getattr(entry, name) is not None:
            problems.append(f"{name}: Snowflake's unload cuts files by size only (max_file_size_mb); remove {name}")
    for name in ("partition", "incremental"):
        if getattr(entry, name) is not None:
            problems.append(f"method: unload does not combine with {name} yet; use method: stream")
    return problems


def _parse_incremental(label: str, entry: _ExportEntry | None, problems: list[str]) -> IncrementSpec | None:
    """The `incremental:` mapping checked for meaning (its types are checked with the entry)."""
    if entry is None or entry.incremental is None:
        return None
    given = entry.incremental
    where = f"{label}.incremental"
    before = len(problems)
    column = _one_column(given.cursor, f"{where}.cursor", problems)
    initial = lookback = None
    if given.initial is not None:
        try:
            initial = parse_initial(given.initial)
        except ValueError as error:
            problems.append(f"{where}.initial: {error}")
    if given.lookback is not None:
        try:
            lookback = parse_lookback(given.lookback)
        except ValueError as error:
            problems.append(f"{where}.lookback: {error}")
    if len(problems) > before or column is None:
        return None
    return IncrementSpec(cursor=column, initial=initial, lookback=lookback)


def _one_column(text: str, where: str, problems: list[str]) -> Identifier | None:
    """A column of the export's result, written as an identifier (quoted or not)."""
    try:
        name = parse_object_name(text)
    except SqlError as error:
        problems.append(f"{where}: {error}")
        return None
    if len(name) > 1:
        problems.append(f"{where}: {text!r} must be one column name of the result, not a qualified name")
        return None
    return name[0]


def _parse_partition(label: str, entry: _ExportEntry | None, problems: list[str]) -> PartitionSpec | None:
    """The `partition:` mapping checked for meaning (its types are checked with the entry)."""
    if entry is None or entry.partition is None:
        return None
    given = entry.partition
    where = f"{label}.partition"
    before = len(problems)
    column = _one_column(given.column, f"{where}.column", problems)
    bounds: dict[str, Any] = {}
    for name in ("start", "end"):
        value = getattr(given, name)
        if value is None and name == "end":
            continue
        try:
            bounds[name] = parse_moment(value, given.granularity)
        except ValueError as error:
            problems.append(f"{where}.{name}: {error}")
    if "start" in bounds and "end" in bounds and bounds["end"] <= bounds["start"]:
        problems.append(f"{where}.end: {given.end!r} is not after start {given.start!r}")
    if len(problems) > before:
        return None
    assert column is not None
    return PartitionSpec(
        column=column,
        granularity=given.granularity,
        start=bounds["start"],
        end=bounds.get("end"),
        lookback=given.lookback,
    )


def _describe(detail: dict[str, Any], root: type[BaseModel] | None = None) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        model = root or _entry_model(detail["loc"][:-1])
        fields = [field.alias or name for name, field in model.model_fields.items()]
        return f"unknown field (allowed: {', '.join(fields)})"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        model = root or _entry_model(detail["loc"][:-1])
        allowed = get_args(model.model_fields[str(detail["loc"][-1])].annotation)
        values = [value for option in allowed for value in (get_args(option) or (option,)) if value is not type(None)]
        return f"{detail['input']!r} is not one of {', '.join(map(str, values))}"
    return f"{detail['msg'].lower()} (got {detail['input']!r})"


def _entry_model(parent: tuple[Any, ...]) -> type[BaseModel]:
    """The model a field belongs to, from the location of its parent in the entry."""
    nested = {"partition": _PartitionEntry, "incremental": _IncrementalEntry}
    return nested.get(str(parent[0]), _ExportEntry) if parent else _ExportEntry


def s3_path_problem(key: str) -> str | None:
    """Why `key` is not a safe object key inside the configured bucket, or None if it is.

    Keys are taken literally by S3 (and IAM allows `exports/../x` under `exports/*`), so the only
    place to refuse traversal, other buckets and look-alike forms is here.
    """
    if not key:
        return "is empty"
    if key != key.strip():
        return f"{key!r} has leading or trailing whitespace"
    if len(key.encode("utf-8")) > MAX_S3_KEY_BYTES:
        return f"is longer than S3's limit of {MAX_S3_KEY_BYTES} bytes"
    if "://" in key or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", key):
        return f"{key!r} must be a key inside the configured bucket (S3_BUCKET_NAME), not a URL"
    if key.startswith("/"):
        return f"{key!r} must be relative to the bucket: drop the leading '/'"
    if key.endswith("/"):
        return f"{key!r} names a folder; end it with a file name such as data.parquet"
    if "\\" in key:
        return f"{key!r} contains a backslash; use '/' between folders"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"{key!r} contains a control character"
    if any(c in key for c in "\u2024\u2025\u2026\uff0e"):
        return f"{key!r} contains a character that looks like a dot; use '.'"
    for segment in key.split("/"):
        decoded = unquote(segment)
        if segment == "":
            return f"{key!r} has an empty folder name ('//')"
        if decoded in (".", ".."):
            return f"{key!r} contains a '{decoded}' segment; paths must not climb out of their folder"
    return None


def _valid_cron(cron: str) -> bool:
    from data_migration.dagster_private import is_valid_cron_string  # imports Dagster: only when needed

    return is_valid_cron_string(cron)


def _cross_entry_problems(specs: Sequence[ExportSpec]) -> list[str]:
    problems: list[str] = []
    # Dagster asset keys are case-sensitive, but `orders` and `ORDERS` name the same Snowflake
    # table and would confuse anyone selecting them, so names must differ beyond case.
    by_key: dict[str, ExportSpec] = {}
    for spec in specs:
        key = "/".join(spec.asset_key_path).lower()
        if key in by_key:
            problems.append(
                f"{spec.label}.table: same asset name as {by_key[key].label}; each export needs its own table name"
            )
        else:
            by_key[key] = spec

    # S3 keys are case-sensitive, so `A/x` and `a/x` are distinct and both allowed.
    by_path: dict[str, ExportSpec] = {}
    for spec in specs:
        if spec.s3_path in by_path:
            problems.append(
                f"{spec.label}.s3_path: {spec.s3_path!r} is also the s3_path of {by_path[spec.s3_path].label}"
            )
        else:
            by_path[spec.s3_path] = spec
    # A split export owns the folder its parts go in (its s3_path minus the extension).
    for spec in specs:
        prefix = spec.output_prefix
        if prefix is None:
            continue
        other = by_path.get(prefix)
        if other is not None and other is not spec:
            problems.append(f"{other.label}.s3_path: {prefix!r} is the folder of {spec.label}'s split output")
        for candidate in specs:
            if candidate is not spec and candidate.s3_path.startswith(prefix + "/"):
                problems.append(
                    f"{candidate.label}.s3_path: {candidate.s3_path!r} lies inside the folder {prefix!r} "
                    f"of {spec.label}'s split output"
                )
    for spec in specs:
        segments = spec.s3_path.split("/")
        for depth in range(1, len(segments)):
            ancestor = by_path.get("/".join(segments[:depth]))
            if ancestor is not None:
                problems.append(
                    f"{spec.label}.s3_path: {spec.s3_path!r} lies inside {ancestor.label}'s "
                    f"s3_path {ancestor.s3_path!r}"
                )
    return sorted(problems, key=_problem_order)


def _problem_order(problem: str) -> tuple[int, str]:
    match = re.match(r"exports\[(\d+)\]", problem)
    return (int(match.group(1)) if match else -1, problem)


DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "export_tables.yaml"
