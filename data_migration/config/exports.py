"""The `exports:` entries: each one checked field by field into an `ExportSpec`."""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from data_migration.config.cursors import IncrementalEntry, IncrementSpec, parse_incremental
from data_migration.config.fields import TABLE_FILE_TYPES, ExportEntry, ExportFileType, IcebergEntry
from data_migration.config.freshness import FreshnessEntry, FreshnessSpec, parse_freshness
from data_migration.config.names import (
    Identifier,
    SqlError,
    parse_object_name,
    read_tables,
    select_all_from,
    unchangeable_reason,
    validate_read_only_query,
)
from data_migration.config.paths import s3_path_problem, split_prefix
from data_migration.config.problems import DAGSTER_NAME, describe, valid_cron
from data_migration.config.windows import PLACEHOLDER, SAMPLE_KEY, PartitionEntry, PartitionSpec, parse_partition

FILE_TYPES: tuple[str, ...] = ("parquet", "csv", "json", *TABLE_FILE_TYPES)
DEFAULT_NAMESPACE = "data_migration"  # an Iceberg table's namespace in the catalog, unless `iceberg:` names one
# File name endings that clearly mean one of our formats; an s3_path ending in another one of
# these than its file_type says is almost certainly a mistake.
_EXTENSIONS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json"}


# Parquet compresses inside the file; CSV and JSON Lines can be gzipped as a whole (.gz).
# A table's data files are Parquet, compressed as Parquet's are.
COMPRESSION = {
    "parquet": ("snappy", "zstd", "gzip", "none"),
    "csv": ("none", "gzip"),
    "json": ("none", "gzip"),
    **{table_type: ("snappy", "zstd", "gzip", "none") for table_type in TABLE_FILE_TYPES},
}
_NOT_YET = "not yet for file_type iceberg/delta"
_TABLE_KIND = {"iceberg": "an Iceberg", "delta": "a Delta"}
# A name in an Iceberg catalog: what every catalog (Glue, REST, SQL) takes without quoting.
_CATALOG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ExportSpec:
    """One validated export: everything after config/ works on these."""

    index: int
    table: str  # as written in the YAML
    object_name: tuple[Identifier, ...]  # the table, case resolved as Snowflake resolves it
    asset_key_path: tuple[str, ...]
    s3_path: str  # an object's key; for a table (iceberg, delta) the table's folder
    file_type: ExportFileType
    query: str | None  # as written (minus a trailing semicolon); None means the whole table
    sql: str  # exactly what is sent to Snowflake
    schedule: str | None
    # Passed to the format's writer, e.g. {"escape_formulas": True} for csv.
    format_options: tuple[tuple[str, Any], ...] = ()
    # Whole-file gzip around a csv or json export (its s3_path ends in .gz); parquet compresses
    # inside the file through format_options instead.
    gzip: bool = False
    # Split output (files/layout.py): parts of at most this many rows / bytes, and a manifest.
    max_rows_per_file: int | None = None
    max_file_bytes: int | None = None
    # Where the entry is written (the list's path, and the line its entry starts on), so the UI's
    # source link of the asset opens it. Not part of code_version: moving an entry changes nothing.
    source_path: str | None = None
    source_line: int | None = None
    # How the asset checks prove what landed: "metadata" (size, CRC32, Parquet footer) or "full"
    # (download and parse every row). Not part of code_version: it changes no output.
    verify: Literal["metadata", "full"] = "metadata"
    # Time-partitioned (config/windows.py): one object per partition, `{partition}` in s3_path.
    partition: PartitionSpec | None = None
    # Incremental by cursor (exports/increments.py): parts and a manifest that grow run by run.
    incremental: IncrementSpec | None = None
    # Who writes the files: the project, from the streamed result ("stream"), or Snowflake's own
    # COPY INTO a stage ("unload", exports/unload.py), always as parts and a manifest.
    method: Literal["stream", "unload"] = "stream"
    # The tables the export reads, each as its name parts as Snowflake stores them (source assets).
    source_tables: tuple[tuple[str, ...], ...] = ()
    # Skip the export when no table it reads changed since its last committed export (its change
    # tokens), and materialize it when an observation of its tables finds a change. Neither is part
    # of code_version: they change when an export runs, not what it writes.
    skip_unchanged: bool = False
    automation: Literal["on_change"] | None = None
    freshness: FreshnessSpec | None = None
    # Times and timestamps in microseconds (the default) or nanoseconds (snowflake/queries.py).
    timestamp_unit: Literal["us", "ns"] = "us"
    # file_type iceberg: the table's (namespace, name) in the catalog.
    iceberg_name: tuple[str, str] | None = None
    # The first rows in the materialization (False: no row values in Dagster's event log). Not
    # part of code_version: it changes what the UI shows, not what is written.
    preview: bool = True

    @property
    def is_table(self) -> bool:
        """An open table format's table (iceberg, delta): data files and commits under s3_path."""
        return self.file_type in TABLE_FILE_TYPES

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
                    self.timestamp_unit,
                    *([repr(self.partition)] if self.partition else []),
                    *([repr(self.incremental)] if self.incremental else []),
                    *([self.method] if self.method != "stream" else []),
                    *([".".join(self.iceberg_name)] if self.iceberg_name else []),
                ]
            ).encode()
        ).hexdigest()
        return digest[:16]


LoadMode = Literal["append", "replace", "merge"]


def parse_entry(index: int, raw: Any, problems: list[str]) -> ExportSpec | None:
    table_hint = raw.get("table") if isinstance(raw, dict) else None
    label = f"exports[{index}]" + (f" ({table_hint})" if isinstance(table_hint, str) else "")
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a mapping with at least `table` and `s3_path`")
        return None
    before = len(problems)
    entry: ExportEntry | None = None
    try:
        entry = ExportEntry.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors():
            field = ".".join(str(part) for part in detail["loc"])
            problems.append(f"{label}.{field}: {describe(detail, _entry_model(detail['loc'][:-1]))}")
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
        if not DAGSTER_NAME.match(part):
            problems.append(
                f"{label}.table: {part!r} cannot be a Dagster asset name "
                "(letters, digits and _ only); export such a table with a `query` and a plain `table` name"
            )

    partition = parse_partition(label, entry.partition if entry else None, problems)
    incremental = parse_incremental(label, entry.incremental if entry else None, problems)
    if entry is not None and entry.partition is not None and entry.incremental is not None:
        problems.append(
            f"{label}.incremental: an export is either partitioned or incremental, not both; remove one of "
            "`partition` and `incremental`"
        )
    compression = entry.compression if entry else None
    if s3_path is not None:
        problems.extend(f"{label}.s3_path: {why}" for why in _s3_path_problems(s3_path, file_type, compression, raw))

    sql = select_all_from(object_name) if object_name else ""
    if query is not None:
        try:
            query = sql = validate_read_only_query(query)
        except SqlError as error:
            problems.append(f"{label}.query: {error}")

    if schedule is not None and not valid_cron(schedule):
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
    if entry is not None and entry.row_group_rows is not None and entry.file_type not in ("parquet", *TABLE_FILE_TYPES):
        problems.append(
            f"{label}.row_group_rows: applies to file_type parquet only (and to iceberg and delta tables), "
            f"not {entry.file_type!r}"
        )
    if entry is not None and entry.max_file_size_mb is not None and entry.max_file_size_mb < 1:
        problems.append(f"{label}.max_file_size_mb: {entry.max_file_size_mb!r} is below the minimum of 1 (MB)")
    if entry is not None and entry.file_type in TABLE_FILE_TYPES:
        problems.extend(f"{label}.{problem}" for problem in _table_problems(entry))
    elif entry is not None and entry.iceberg is not None:
        problems.append(f"{label}.iceberg: applies to file_type iceberg only, not {entry.file_type!r}")
    if entry is not None and entry.method == "unload" and entry.file_type not in TABLE_FILE_TYPES:
        problems.extend(f"{label}.{problem}" for problem in _unload_problems(entry))
    if entry is not None and entry.skip_unchanged and entry.file_type not in TABLE_FILE_TYPES:
        problems.extend(f"{label}.skip_unchanged: {why}" for why in _skip_problems(entry, sql))
    if entry is not None and entry.automation is not None and entry.partition is not None:
        problems.append(
            f"{label}.automation: a partitioned export's schedule asks for its latest partitions; "
            "automation: on_change applies to exports of the whole query"
        )
    freshness = None
    if entry is not None and entry.freshness is not None:
        freshness = parse_freshness(f"{label}.freshness", entry.freshness, problems)
    if len(problems) > before or entry is None:
        return None
    format_options: tuple[tuple[str, Any], ...] = ()
    if entry.file_type == "csv":
        # Exact text unless asked for: the escape against spreadsheet formula injection (OWASP
        # ASVS V1.2.10) changes values such as '+44 20 7946 0958' and '-5', which lake engines read.
        format_options = (("escape_formulas", entry.csv_escape_formulas is True),)
    if entry.file_type == "json":
        # Exact strings unless asked for: most JSON readers turn a number into a double.
        format_options = (("decimals", entry.json_decimals or "string"),)
    if entry.file_type == "parquet" or entry.file_type in TABLE_FILE_TYPES:
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
        source_tables=(
            (tuple(part.name for part in object_name),) if query is None else tuple(dict.fromkeys(read_tables(sql)))
        ),
        skip_unchanged=bool(entry.skip_unchanged),
        automation=entry.automation,
        freshness=freshness,
        timestamp_unit=entry.timestamp_unit or "us",
        iceberg_name=iceberg_name(entry.iceberg, asset_key_path) if entry.file_type == "iceberg" else None,
        preview=entry.preview is not False,
    )


def _s3_path_problems(s3_path: str, file_type: str | None, compression: str | None, raw: dict) -> list[str]:
    """What is wrong with the entry's s3_path, given its file_type and compression."""
    if file_type in TABLE_FILE_TYPES:
        problem = s3_path_problem(s3_path) or _table_folder_problem(s3_path, file_type)
        return [problem] if problem else []
    problems = []
    has_placeholder = PLACEHOLDER in s3_path
    if has_placeholder and "partition" not in raw:
        problems.append(f"{s3_path!r} contains {PLACEHOLDER} but the export has no `partition:`")
    elif not has_placeholder and "partition" in raw:
        problems.append(
            f"a partitioned export's s3_path must contain {PLACEHOLDER}, which is replaced "
            f"by each partition's key (e.g. exports/orders/date={PLACEHOLDER}/data.parquet)"
        )
    s3_problem = s3_path_problem(s3_path.replace(PLACEHOLDER, SAMPLE_KEY))
    stem, suffix = posixpath.splitext(s3_path.lower())
    if suffix == ".gz":
        if file_type in ("csv", "json") and compression != "gzip":
            problems.append(f"{s3_path!r} ends in .gz; add `compression: gzip` or drop .gz")
        suffix = posixpath.splitext(stem)[1]
    elif compression == "gzip" and file_type in ("csv", "json"):
        problems.append(f"{s3_path!r} must end in .gz when compression is gzip (e.g. data.csv.gz)")
    if s3_problem:
        problems.append(s3_problem)
    elif file_type and suffix in _EXTENSIONS and _EXTENSIONS[suffix] != file_type:
        problems.append(f"{s3_path!r} ends in {suffix!r} but file_type is {file_type!r}; change one so that they agree")
    return problems


def iceberg_name(given: IcebergEntry | None, asset_key_path: tuple[str, ...]) -> tuple[str, str]:
    """(namespace, table) in the catalog: as `iceberg:` names them, else data_migration and the
    export's table name in lower case (a qualified name's parts joined by _)."""
    namespace = given.namespace if given and given.namespace else DEFAULT_NAMESPACE
    table = given.table if given and given.table else "_".join(asset_key_path).lower()
    return namespace, table


def _table_folder_problem(s3_path: str, file_type: str) -> str | None:
    """Why `s3_path` cannot be a table's folder (the key rules themselves are s3_path_problem's)."""
    if PLACEHOLDER in s3_path:
        return f"{s3_path!r}: {_TABLE_KIND[file_type]} table is one folder; {PLACEHOLDER} partitions are {_NOT_YET}"
    suffix = posixpath.splitext(posixpath.basename(s3_path.lower()))[1]
    if suffix in (*_EXTENSIONS, ".gz"):
        return (
            f"{s3_path!r} is {_TABLE_KIND[file_type]} table's folder (its data/ and metadata live under it): drop the "
            f"{suffix!r} extension, e.g. lake/orders"
        )
    return None


def _table_problems(entry: ExportEntry) -> list[str]:
    """What a table export (file_type iceberg or delta) refuses, as `field: why` lines: options
    of files the table's writer decides, and what is not built for tables yet."""
    kind = _TABLE_KIND[entry.file_type]
    problems = [
        f"{name}: {kind} table's data files are sized by its writer (about 1,000,000 rows or 128 MiB each) "
        f"and listed by its commits, not by a manifest; remove {name}"
        for name in ("max_rows_per_file", "max_file_size_mb")
        if getattr(entry, name) is not None
    ]
    if entry.method == "unload":
        problems.append(f"method: unload: {_NOT_YET}; use method: stream (the default)")
    if entry.timestamp_unit == "ns":
        problems.append(
            "timestamp_unit: ns: Iceberg v2 and Delta tables (without Delta's timestampNanos feature) keep "
            "microseconds; use us (the default)"
        )
    for name in ("partition", "incremental", "skip_unchanged"):
        if getattr(entry, name):
            problems.append(f"{name}: {_NOT_YET}; remove {name}, or export file_type parquet")
    if entry.verify == "full":
        problems.append(f"verify: full: {_NOT_YET} (the checks read the commit's own metadata); remove verify")
    if entry.iceberg is not None and entry.file_type != "iceberg":
        problems.append(f"iceberg: applies to file_type iceberg only, not {entry.file_type!r}")
    elif entry.iceberg is not None:
        namespace, table = entry.iceberg.namespace, entry.iceberg.table
        if namespace is not None and not all(_CATALOG_NAME.fullmatch(part) for part in namespace.split(".")):
            problems.append(
                f"iceberg.namespace: {namespace!r} must be letters, digits and _ (not starting with a digit), "
                "a nested namespace's parts joined by '.'"
            )
        if table is not None and not _CATALOG_NAME.fullmatch(table):
            problems.append(f"iceberg.table: {table!r} must be letters, digits and _ (not starting with a digit)")
    return problems


def _unload_problems(entry: ExportEntry) -> list[str]:
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
    if entry.timestamp_unit is not None:
        problems.append("timestamp_unit: Snowflake's unload writes timestamps as it does; use method: stream for it")
    return problems


def _skip_problems(entry: ExportEntry, sql: str) -> list[str]:
    """Why `skip_unchanged` cannot apply to the entry."""
    if entry.partition is not None:
        return ["a partitioned export reads the partitions its run asks for; skip_unchanged applies to whole exports"]
    if entry.incremental is not None:
        return ["an incremental export already reads only the rows past its mark; remove skip_unchanged"]
    reason = unchangeable_reason(sql) if sql else None
    return [f"cannot tell when this query's answer changes: {reason}"] if reason else []


def _entry_model(parent: tuple[Any, ...]) -> type[BaseModel]:
    """The model a field belongs to, from the location of its parent in the entry."""
    nested = {
        "partition": PartitionEntry,
        "incremental": IncrementalEntry,
        "freshness": FreshnessEntry,
        "iceberg": IcebergEntry,
    }
    return nested.get(str(parent[0]), ExportEntry) if parent else ExportEntry
