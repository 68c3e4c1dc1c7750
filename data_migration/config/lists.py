"""The export list: YAML in, typed `ExportSpec`s (and `LoadSpec`s) out. The only module that
reads the YAML.

Every problem is reported before any network call, all at once, each naming the file, the entry
(its list, index and table) and the field, e.g.
    config/export_tables.yaml: exports[2] (ORDERS).file_type: 'xlsx' is not one of parquet, csv, json
    config/export_tables.yaml: loads[0] (ANALYTICS.STAGING.ORDERS_COPY).keys: required for mode: merge
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from data_migration.config.exports import ExportSpec, parse_entry
from data_migration.config.loads import LoadSpec, cross_load_problems, parse_load
from data_migration.config.paths import Output, overlap_problems, partition_folder_problem
from data_migration.config.problems import ConfigError


@dataclass(frozen=True)
class ExportsConfig:
    path: Path
    exports: tuple[ExportSpec, ...]
    loads: tuple[LoadSpec, ...] = ()

    def schedules(self) -> dict[str, tuple[ExportSpec, ...]]:
        """Cron string (its fields one space apart) -> the unpartitioned exports it runs, in file
        order. A partitioned export gets a schedule of its own, for its partitions; an export with
        `automation: on_change` runs when its tables change, so its cron only says when they are
        observed (in a scheduled job as well, it would run twice per change)."""
        by_cron: dict[str, list[ExportSpec]] = {}
        for spec in self.exports:
            if spec.schedule and spec.partition is None and spec.automation is None:
                by_cron.setdefault(" ".join(spec.schedule.split()), []).append(spec)
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
    return parse_exports(document, path, entry_lines(text), entry_lines(text, "loads"))


def entry_lines(text: str, section: str = "exports", parent: str | None = None) -> list[int]:
    """The line (1-based) each item of a top-level list (or of a list under the top-level mapping
    `parent`, as a component's `attributes:`) starts on, from YAML's node tree."""
    try:
        root = yaml.compose(text, Loader=_SafeLoader)
    except yaml.YAMLError:  # e.g. several documents in one defs.yaml: the lines are only a source link
        return []
    if parent is not None and isinstance(root, yaml.MappingNode):
        root = next((value for key, value in root.value if key.value == parent), None)
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
        spec = parse_entry(index, raw, problems)
        if spec is not None:
            line = lines[index] if index < len(lines) else None
            specs.append(replace(spec, source_path=str(path.resolve()), source_line=line))
    problems.extend(_cross_entry_problems(specs))
    loads: list[LoadSpec] = []
    for index, raw in enumerate(load_entries or []):
        load = parse_load(index, raw, specs, len(entries or []), problems)
        if load is not None:
            line = load_lines[index] if index < len(load_lines) else None
            loads.append(replace(load, source_path=str(path.resolve()), source_line=line))
    problems.extend(cross_load_problems(loads, specs))
    if problems:
        raise ConfigError(path, problems)
    return ExportsConfig(path=path, exports=tuple(specs), loads=tuple(loads))


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
    problems.extend(_output_problems(specs))
    named: dict[tuple[str, str], ExportSpec] = {}
    for spec in specs:
        if spec.iceberg_name is None:
            continue
        if (other := named.setdefault(spec.iceberg_name, spec)) is not spec:
            problems.append(
                f"{spec.label}.iceberg: the catalog name {'.'.join(spec.iceberg_name)} is {other.label}'s too; "
                "give one of them `iceberg: {table: <another name>}`"
            )
    return sorted(problems, key=_problem_order)


def _output_problems(specs: Sequence[ExportSpec]) -> list[str]:
    """Exports whose outputs can overlap in the bucket, and partitioned split exports whose
    partitions would share a folder: a split export deletes what its manifest does not list in its
    folder, so either would destroy another's files. S3 keys are case-sensitive: `A/x` and `a/x`
    are distinct and both allowed."""
    problems = [
        f"{spec.label}.s3_path: {why}"
        for spec in specs
        if spec.split and spec.partition and (why := partition_folder_problem(spec.s3_path, spec.partition.key_format))
    ]
    outputs = [
        Output(
            spec.label,
            spec.s3_path,
            spec.split is not None or spec.is_table,  # a table owns its folder, as a split export does
            spec.partition.key_format if spec.partition else None,
        )
        for spec in specs
    ]
    return problems + overlap_problems(outputs)


def _problem_order(problem: str) -> tuple[int, str]:
    match = re.match(r"exports\[(\d+)\]", problem)
    return (int(match.group(1)) if match else -1, problem)


DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "export_tables.yaml"
