"""When a table last changed, in the embedded emulator, as Snowflake documents it. fakesnow 0.12
has no `SYSTEM$LAST_CHANGE_COMMIT_TIME` and answers INFORMATION_SCHEMA.TABLES.LAST_ALTERED with
the epoch for every table.

- `SYSTEM$LAST_CHANGE_COMMIT_TIME('<name>')`
  (https://docs.snowflake.com/en/sql-reference/functions/system_last_change_commit_time): "a
  token that can be used to detect whether a database table or view changed between two calls",
  a NUMBER that "increases" with "each DML operation performed on the specified table or
  underlying tables in the specified view", "typically an approximation of the time that the
  database object was last changed, expressed as the UTC timestamp in nanoseconds". The emulator
  keeps one per table: the time a change to it committed (an autocommit statement's end, or the
  COMMIT, explicit or by a later DDL statement, of the transaction that made it; a rolled back
  change moves nothing). A view's token is the largest of its tables'. The name is read as
  Snowflake reads object names in a string: the whole name in single quotes, a case-sensitive
  part in double quotes inside them, the session's database and schema for missing parts.
- INFORMATION_SCHEMA.TABLES.LAST_ALTERED
  (https://docs.snowflake.com/en/sql-reference/info-schema/tables): "Date and time the object was
  last altered by a DML, DDL, or background metadata operation", for DML "the timestamp at the
  beginning of the statement execution rather than the time of the commit", and "updated even
  when no rows are affected". The emulator's TABLES view reads it from the same record.

What changes a table: INSERT, UPDATE, DELETE, MERGE, COPY INTO <table>, TRUNCATE, CREATE TABLE
(with OR REPLACE, AS SELECT or LIKE), ALTER TABLE (both tables of a SWAP WITH, the new name of a
RENAME). A table the emulator has seen no change to since it started answers `baseline`: the time
its data was set up (the TPC-H tables: when their files were generated, or today's date shift).
"""

from __future__ import annotations

import re
import threading
import time
from string import Template
from typing import Any

from data_migration.local.loading import StatementError
from data_migration.local.sessions import names
from data_migration.local.stages import OBJECT_NAME as _NAME

CHANGES = "_fs_global._fs_information_schema._dm_changes"
_CALL = re.compile(r"SYSTEM\$LAST_CHANGE_COMMIT_TIME\s*\(\s*'(?P<name>(?:[^'\\]|\\.)*)'\s*\)", re.IGNORECASE)
_TABLE_WORD = r"(?:(?:OR\s+REPLACE\s+)?(?:(?:LOCAL|GLOBAL)\s+)?(?:TRANSIENT\s+|TEMP\s+|TEMPORARY\s+|VOLATILE\s+)?)"
_TARGETS = [
    re.compile(rf"^\s*INSERT\s+(?:OVERWRITE\s+)?INTO\s+(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(rf"^\s*UPDATE\s+(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(rf"^\s*DELETE\s+FROM\s+(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(rf"^\s*MERGE\s+INTO\s+(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(rf"^\s*COPY\s+INTO\s+(?P<name>{_NAME})", re.IGNORECASE),  # not @stage: an unload
    re.compile(rf"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:IF\s+EXISTS\s+)?(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(rf"^\s*CREATE\s+{_TABLE_WORD}TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(
        rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<name>{_NAME})\s+SWAP\s+WITH\s+(?P<other>{_NAME})", re.IGNORECASE
    ),
    re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_NAME}\s+RENAME\s+TO\s+(?P<name>{_NAME})", re.IGNORECASE),
    re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<name>{_NAME})\b", re.IGNORECASE),
]
_COMMIT = re.compile(r"^\s*COMMIT\b", re.IGNORECASE)
_ROLLBACK = re.compile(r"^\s*ROLLBACK\b", re.IGNORECASE)

Name = tuple[str, str, str]  # database, schema, object, as fakesnow stores them


def changed_tables(sql_text: str, conn: Any) -> list[Name]:
    """The tables a statement changes (for the first pattern that matches it)."""
    for pattern in _TARGETS:
        match = pattern.match(sql_text)
        if match:
            found = [names(match.group("name"), conn)]
            if "other" in pattern.groupindex:
                found.append(names(match.group("other"), conn))
            return found
    return []


class ChangeTokens:
    """Each table's last committed change, kept in a table of fakesnow's global database (so that
    INFORMATION_SCHEMA.TABLES can join it), and each session's changes not yet committed."""

    def __init__(self, started_ns: int | None = None) -> None:
        self.started_ns = started_ns if started_ns is not None else time.time_ns()
        self._pending: dict[str, dict[Name, int]] = {}  # session -> table -> statement start
        self._lock = threading.Lock()
        self._last = 0

    def before(self, session: str, conn: Any, sql_text: str, *, was_open: bool, now_open: bool) -> dict[Name, int]:
        """Before a statement runs (after Transactions.before, which says whether a transaction was
        and is open): the changes that commit when this statement answers, each with the time its
        statement started; `after` records them. Changes inside a transaction wait for its end."""
        started = time.time_ns()
        committing: dict[Name, int] = {}
        if was_open and not now_open:
            pending = self._pending.pop(session, {})
            if _COMMIT.match(sql_text):
                committing = pending
            elif pending and not _ROLLBACK.match(sql_text):  # a DDL statement: it committed them first
                record(conn, pending, self._next())
        changes = {table: started for table in changed_tables(sql_text, conn)}
        if now_open:
            self._pending.setdefault(session, {}).update(changes)
            return committing
        return {**committing, **changes}

    def after(self, conn: Any, committed: dict[Name, int]) -> None:
        """After the statement answered: the changes it committed get their token."""
        if committed:
            record(conn, committed, self._next())

    def end(self, session: str) -> None:
        """The session ended: its open transaction was rolled back."""
        self._pending.pop(session, None)

    def _next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last

    def answered(self, sql_text: str, conn: Any) -> str:
        """The statement with each `SYSTEM$LAST_CHANGE_COMMIT_TIME('<name>')` replaced by its token."""
        if not _CALL.search(sql_text):
            return sql_text
        return _CALL.sub(lambda m: str(self.token(conn, names(_unescaped(m.group("name")), conn))), sql_text)

    def token(self, conn: Any, name: Name) -> int:
        """The table's recorded token, or `started_ns`; a view's, the largest of its tables'.
        A name that is neither (a dropped table keeps its record) fails as Snowflake does."""
        duck = conn._duck_conn
        ensure_table(duck)
        exists = duck.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?", list(name)
        ).fetchone()
        if exists:
            row = duck.execute(
                f"SELECT changed_ns FROM {CHANGES} WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                list(name),
            ).fetchone()
            return int(row[0]) if row is not None else self.started_ns
        view = duck.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND view_name = ?", list(name)
        ).fetchone()
        if view is None:
            raise StatementError(
                f"SQL compilation error:\nObject '{'.'.join(name)}' does not exist or not authorized.", 2003, "02000"
            )
        return max(
            [self.token(conn, base) for base in _view_tables(view[0], name)] or [self.started_ns],
        )


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _view_tables(sql: str, view: Name) -> list[Name]:
    """The tables (and views) a view's query reads, resolved in the view's database and schema."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    query = tree.expression if isinstance(tree, exp.Create) else tree
    ctes = {cte.alias_or_name.upper() for cte in query.find_all(exp.CTE)}
    found = []
    for table in query.find_all(exp.Table):
        if not table.name or (not table.db and table.name.upper() in ctes):
            continue
        found.append((table.catalog or view[0], table.db or view[1], table.name))
    return found


def ensure_table(duck: Any) -> None:
    duck.execute(
        f"CREATE TABLE IF NOT EXISTS {CHANGES} (database_name VARCHAR, schema_name VARCHAR, table_name VARCHAR, "
        "changed_ns BIGINT, altered_ns BIGINT, PRIMARY KEY (database_name, schema_name, table_name))"
    )


def record(conn: Any, tables: dict[Name, int], token: int) -> None:
    """Each table's new token, and the start of the statement that changed it (LAST_ALTERED)."""
    # A cursor of its own: the session's may be answering its next statement on another thread.
    duck = (conn._duck_conn if hasattr(conn, "_duck_conn") else conn).cursor()
    try:
        ensure_table(duck)
        for (database, schema, table), started in tables.items():
            duck.execute(
                f"INSERT OR REPLACE INTO {CHANGES} VALUES (?, ?, ?, ?, ?)", [database, schema, table, token, started]
            )
    finally:
        duck.close()


def baseline(duck: Any, database: str, schema: str, table: str, ns: int) -> None:
    """A table's token before any change the emulator sees: when its data was set up."""
    record(duck, {(database, schema, table): ns}, ns)


# fakesnow's INFORMATION_SCHEMA.TABLES view (fakesnow/info_schema.py), with LAST_ALTERED read from
# the record above (the epoch for a table never changed, as fakesnow answers every table).
_TABLES_VIEW = Template(
    f"""
create table if not exists {CHANGES} (database_name VARCHAR, schema_name VARCHAR, table_name VARCHAR,
    changed_ns BIGINT, altered_ns BIGINT, PRIMARY KEY (database_name, schema_name, table_name));
create view if not exists ${{catalog}}._fs_information_schema._fs_tables AS
select
    tables.database_name AS "TABLE_CATALOG",
    tables.schema_name AS "TABLE_SCHEMA",
    tables.table_name AS "TABLE_NAME",
    'SYSADMIN' AS "TABLE_OWNER",
    'BASE TABLE' AS "TABLE_TYPE",
    'NO' AS "IS_TRANSIENT",
    NULL::VARCHAR AS "CLUSTERING_KEY",
    tables.estimated_size AS "ROW_COUNT",
    0 AS "BYTES",
    1 AS "RETENTION_TIME",
    NULL::VARCHAR AS "SELF_REFERENCING_COLUMN_NAME",
    NULL::VARCHAR AS "REFERENCE_GENERATION",
    NULL::VARCHAR AS "USER_DEFINED_TYPE_CATALOG",
    NULL::VARCHAR AS "USER_DEFINED_TYPE_SCHEMA",
    NULL::VARCHAR AS "USER_DEFINED_TYPE_NAME",
    'YES' AS "IS_INSERTABLE_INTO",
    'YES' AS "IS_TYPED",
    NULL::VARCHAR AS "COMMIT_ACTION",
    to_timestamp(0)::timestamptz AS "CREATED",
    coalesce(
        make_timestamp(changes.altered_ns // 1000)::timestamptz, to_timestamp(0)::timestamptz
    ) AS "LAST_ALTERED",
    to_timestamp(0)::timestamptz AS "LAST_DDL",
    'SYSADMIN' AS "LAST_DDL_BY",
    'NO' AS "AUTO_CLUSTERING_ON",
    _fs_tables_ext.comment AS "COMMENT",
    'NO' AS "IS_TEMPORARY",
    'NO' AS "IS_ICEBERG",
    'NO' AS "IS_DYNAMIC",
    'NO' AS "IS_IMMUTABLE",
    'NO' AS "IS_HYBRID"
from duckdb_tables tables
left join _fs_global._fs_information_schema._fs_tables_ext on
    tables.database_name = _fs_tables_ext.ext_table_catalog AND
    tables.schema_name = _fs_tables_ext.ext_table_schema AND
    tables.table_name = _fs_tables_ext.ext_table_name
left join {CHANGES} changes on
    tables.database_name = changes.database_name AND
    tables.schema_name = changes.schema_name AND
    tables.table_name = changes.table_name
where tables.database_name = '${{catalog}}'
  and tables.schema_name != '_fs_information_schema'
"""
)


def serve_last_altered() -> None:
    """Make fakesnow create every later database's INFORMATION_SCHEMA.TABLES with LAST_ALTERED."""
    import fakesnow.info_schema

    fakesnow.info_schema.SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW = _TABLES_VIEW
