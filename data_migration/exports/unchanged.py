"""`skip_unchanged`: an export whose tables have not changed since its last committed export sends
no query that reads data, writes nothing, and records that it was checked and found unchanged.

Snowflake's change token (`SYSTEM$LAST_CHANGE_COMMIT_TIME`,
https://docs.snowflake.com/en/sql-reference/functions/system_last_change_commit_time) "can be used
to detect whether a database table or view changed between two calls": it moves with every DML
operation on a table, or on a view's underlying tables. A run reads the tokens of every table the
export reads before its query; an export records them with what it wrote (in the manifest of a
split or unloaded export, so the data and its tokens commit together; in the materialization of
one object), never before the data. The next run compares: the same tokens, the same code version,
and the output still there as recorded (the manifest, or the object's size and CRC32) mean nothing
changed since before the last export's query read the tables, and the run keeps it. A token read
before a change and recorded after it can only make the next run export again, never skip a change.

A run that exports one step after another in one process (the in-process executor, and
`data-migration run`) reads the tokens of all its skip_unchanged exports in one statement, at the
first of them (`RunTokens`), so its unchanged exports send nothing to Snowflake at all: no sign-in,
no statement. Those tokens are read earlier than an export's own read would be, which by the rule
above is safe, with one exception the batch leaves out: a table a load writes (the load may run
in the same run, between the batch read and the export), and any export that waits in the run for
another asset.

A view's token moves with DML on the tables it reads, and with nothing else: a "last 7 days" view
over `CURRENT_DATE()` would be kept for ever. So the statement that reads the tokens also reads
each table's view definition (INFORMATION_SCHEMA.VIEWS.VIEW_DEFINITION, "text of the view's query
expression", https://docs.snowflake.com/en/sql-reference/info-schema/views; NULL for a table),
and an export that reads a view whose definition fails the test a query's does
(config/names.py's `unchangeable_reason`), or whose definition this role may not see (a secure
view it does not own), fails with the reason instead of being kept. What the token does not see
either way, and no definition shows: a UDF or a view that reads other tables (its token moves
with the view's own tables only), a row access or masking policy that reads a mapping table or
the current role, a table's definition changing without DML (ALTER TABLE … DROP COLUMN), or
another view this view reads that moves with time. Those need `skip_unchanged` off.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dagster import AssetKey, MetadataValue

from data_migration.config.names import string_literal, unchangeable_reason
from data_migration.exports.metadata import column_schema
from data_migration.files.layout import Manifest, Split, read_committed
from data_migration.files.storage import ObjectStore

_AS_QUERY = re.compile(r"\bAS\s+((?:SELECT|WITH)\b)", re.IGNORECASE)  # where a CREATE VIEW's query begins
SOURCE_TOKENS = "source_tokens"  # the metadata key, and the manifest field, of the recorded tokens
# What a kept export's materialization repeats from the one that wrote it, and what it does not:
# this run's own timing, throughput and preview describe a write that did not happen.
_NOT_REPEATED = ("elapsed_seconds", "rows_per_second", "megabytes_per_second", "preview", "snowflake_query_id")


def table_text(parts: Sequence[str]) -> str:
    """A table's name as SQL, every part quoted (as Snowflake stores it)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def tokens_sql(tables: Sequence[Sequence[str]], views: bool = False) -> str:
    """One statement that reads the change token of every table: T0, T1, … in order; with
    `views`, also each one's view definition, D0, D1, … ('' where hidden, NULL for a table)."""
    columns = [
        f"SYSTEM$LAST_CHANGE_COMMIT_TIME({string_literal(table_text(parts))}) AS T{index}"
        for index, parts in enumerate(tables)
    ]
    if views:
        columns += [f"({definition_sql(parts)}) AS D{index}" for index, parts in enumerate(tables)]
    return "SELECT " + ", ".join(columns)


def definition_sql(table: Sequence[str]) -> str:
    """The view definition of `table` from its database's INFORMATION_SCHEMA.VIEWS: one row for a
    view (the text, or '' where this role may not see it), none for a table."""
    schema = "CURRENT_SCHEMA()" if len(table) == 1 else string_literal(table[-2])
    where = f"{table_text(table[:1])}.INFORMATION_SCHEMA.VIEWS" if len(table) == 3 else "INFORMATION_SCHEMA.VIEWS"
    return (
        f"SELECT COALESCE(VIEW_DEFINITION, '') FROM {where} "
        f"WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {string_literal(table[-1])}"
    )


def view_problems(row: Mapping[str, Any], tables: Sequence[Sequence[str]]) -> dict[str, str]:
    """From the statement's row (read with `views`): {table: why its token cannot stand for its
    rows}, for each table that is a view whose definition is hidden or fails the query test."""
    problems: dict[str, str] = {}
    for index, parts in enumerate(tables):
        definition = row.get(f"D{index}")
        if definition is None:
            continue  # a table
        name = ".".join(parts)
        reason = view_reason(str(definition))
        if reason is not None:
            problems[name] = f"{name} is a view, and {reason}"
    return problems


def view_reason(definition: str) -> str | None:
    """Why a view's answer can move without DML to its tables, from its definition (the whole
    CREATE VIEW text, as Snowflake and fakesnow give it, or its query alone); None if it cannot."""
    if not definition.strip():
        return (
            "this role may not see its definition (a secure view it does not own), so nothing shows it reads "
            "tables only"
        )
    query = _view_query(definition)
    if query is None:
        return "its definition could not be read as a query"
    try:
        reason = unchangeable_reason(query)
    except Exception:  # noqa: BLE001 - any parse failure is the same answer
        return "its definition could not be read as a query"
    return None if reason is None else reason.replace("its answer", "its rows", 1)


def _view_query(definition: str) -> str | None:
    """The SELECT (or WITH) of a CREATE VIEW text, or the text itself when it is one."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(definition.strip().rstrip(";"), read="snowflake")
    except Exception:  # noqa: BLE001
        tree = None
    if isinstance(tree, exp.Create) and isinstance(tree.expression, exp.Query):
        return tree.expression.sql("snowflake")
    if isinstance(tree, exp.Query):
        return tree.sql("snowflake")
    match = _AS_QUERY.search(definition)
    return definition[match.start(1) :].strip().rstrip(";") if match else None


def tokens_from(row: Mapping[str, Any], tables: Sequence[Sequence[str]]) -> dict[str, str]:
    """The statement's one row, by column name, as {table: token}."""
    return {".".join(parts): str(int(row[f"T{index}"])) for index, parts in enumerate(tables)}


def changed_at(tokens: Mapping[str, str]) -> str:
    """When the newest change committed, approximately: Snowflake's token is "typically an
    approximation of the time" in nanoseconds, a change indicator first."""
    newest = max(int(token) for token in tokens.values())
    return f"{datetime.fromtimestamp(newest / 1e9, UTC):%Y-%m-%d %H:%M:%S} UTC"


# Executors that run a run's steps one after another in one process, where the batch is shared.
_ONE_PROCESS = frozenset({"in_process", "execute_in_process_executor"})
_RUNS_KEPT = 4  # a process runs one run at a time; a few are kept for a retried step


@dataclass
class RunTokens:
    """The change tokens a run reads once for all its skip_unchanged exports (one list's).

    `tables` holds, per export asset, the tables it reads, for every skip_unchanged export of the
    list whose tables no load of the list writes. At such an export's step, `cached()` gives its
    tokens if the run already read them; else `batch()` gives the tables to read: the first time
    in a one-process run, the tables of every such export the run selected, otherwise (another
    executor, another export, or a run whose batch was already read, or failed) the export's own.
    `remember()` keeps what a step read for the run's later steps."""

    tables: Mapping[AssetKey, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    _runs: OrderedDict[str, dict[str, str]] = field(default_factory=OrderedDict)
    _problems: dict[str, dict[str, str]] = field(default_factory=dict)  # per run: view problems (view_problems)

    def cached(self, run_id: str, key: AssetKey) -> dict[str, str] | None:
        known = self._runs.get(run_id)
        if key not in self.tables or known is None:
            return None
        names = [".".join(parts) for parts in self.tables[key]]
        return {name: known[name] for name in names} if all(name in known for name in names) else None

    def batch(
        self, run_id: str, key: AssetKey, own: Sequence[Sequence[str]], selected: Iterable[AssetKey], executor: str
    ) -> list[tuple[str, ...]]:
        own_tables = [tuple(parts) for parts in own]
        if key not in self.tables or executor not in _ONE_PROCESS or run_id in self._runs:
            return own_tables
        chosen = {table for asset in selected if asset in self.tables for table in self.tables[asset]}
        return sorted(chosen | set(own_tables))

    def remember(
        self, run_id: str, key: AssetKey, tokens: Mapping[str, str], problems: Mapping[str, str] | None = None
    ) -> None:
        """Keep a batched export's tokens (or none: its batch failed), and the problems of the
        views among its tables, for the run's later steps."""
        if key not in self.tables:
            return
        self._runs.setdefault(run_id, {}).update(tokens)
        self._problems.setdefault(run_id, {}).update(problems or {})
        self._runs.move_to_end(run_id)
        while len(self._runs) > _RUNS_KEPT:
            gone, _ = self._runs.popitem(last=False)
            self._problems.pop(gone, None)

    def problems(self, run_id: str) -> Mapping[str, str]:
        return self._problems.get(run_id, {})


@dataclass
class ConditionalExport:
    """An export run that may be kept: the tables' tokens read before any query, what the last
    materialization recorded, and the export's usual run (`run`), started only if it must."""

    tokens: dict[str, str]
    code_version: str
    previous: Mapping[str, Any] | None  # the last materialization's metadata (MetadataValues)
    run: Callable[[], Any]
    close: Callable[[], None] = lambda: None

    @property
    def record(self) -> dict[str, Any]:
        """What the export records with its output."""
        return {"code_version": self.code_version, "tables": dict(self.tokens)}


def kept_output(store: ObjectStore, key: str, split: Split | None, obj: ConditionalExport) -> dict[str, Any] | None:
    """The metadata of an unchanged export kept as it is, or None when the export must run: a
    token or the code version differs, nothing recorded them, or the output is not as recorded.

    A split or unloaded export's manifest records its tokens, so it can be kept on an instance
    with no history (a cron's `data-migration run` without DAGSTER_HOME); one object's tokens are
    in its last materialization."""
    previous = obj.previous
    if split is not None:
        manifest, _ = read_committed(store, key)
        if manifest is None or manifest.content.get(SOURCE_TOKENS) != obj.record:
            return None
        if previous is None or manifest.sha256 != _value(previous.get("sha256")):
            previous = _manifest_metadata(manifest)
        uri = manifest.uri
    else:
        if previous is None or _value(previous.get(SOURCE_TOKENS)) != obj.record:
            return None
        stat = store.stat(key)
        recorded_crc = _value(previous.get("crc32"))
        if stat is None or stat.size != _value(previous.get("size_bytes")):
            return None
        if recorded_crc and stat.checksum and stat.checksum != recorded_crc:
            return None
        uri = store.uri(key)
    kept = {name: value for name, value in previous.items() if name not in _NOT_REPEATED}
    return {
        **kept,
        SOURCE_TOKENS: MetadataValue.json(obj.record),
        "unchanged": MetadataValue.bool(True),
        "unchanged_since": MetadataValue.text(changed_at(obj.tokens)),
        "dagster/uri": MetadataValue.path(uri),
    }


def _manifest_metadata(manifest: Manifest) -> dict[str, Any]:
    """What a committed manifest says of the export it lists, as its materialization says it."""
    columns = manifest.content.get("columns") or []
    return {
        "dagster/row_count": MetadataValue.int(manifest.rows),
        # The tables have not changed since the export's query counted these rows.
        "snowflake_row_count": MetadataValue.int(manifest.rows),
        "dagster/column_schema": MetadataValue.table_schema(
            column_schema((c["name"], c["snowflake_type"], c.get("arrow_type")) for c in columns)
        ),
        "size_bytes": MetadataValue.int(manifest.size),
        "sha256": MetadataValue.text(manifest.sha256),
        "file_count": MetadataValue.int(len(manifest.parts)),
    }


def recorded(obj: ConditionalExport | None) -> dict[str, Any]:
    """The metadata an export that ran records its tokens in (none without skip_unchanged)."""
    if obj is None:
        return {}
    return {SOURCE_TOKENS: MetadataValue.json(obj.record), "unchanged": MetadataValue.bool(False)}


def _value(entry: Any) -> Any:
    """A MetadataValue's value (a JSON one's is already a dict)."""
    return getattr(entry, "value", entry)
