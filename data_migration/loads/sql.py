"""The SQL text a load sends, built from quoted identifiers, checked types and escaped literals.

Pure: nothing here talks to Snowflake, so tests compare the exact text and parse it with sqlglot.
Each statement follows Snowflake's documentation:
- COPY INTO <table> (…) FROM (SELECT $1:"col"::TYPE … FROM @stage) FILES = (…)
  (https://docs.snowflake.com/en/sql-reference/sql/copy-into-table): each Parquet column lands in
  the table's column of the same name, cast to its exact type; `ON_ERROR = ABORT_STATEMENT` loads
  every row of every file or none. The Parquet options
  (https://docs.snowflake.com/en/sql-reference/sql/create-file-format): `USE_LOGICAL_TYPE = TRUE`
  reads the logical types exports write (nanosecond timestamps, decimals, times) as such, and
  `BINARY_AS_TEXT = FALSE` keeps a BINARY column's bytes instead of reading them as UTF-8 text.
- INSERT OVERWRITE INTO (https://docs.snowflake.com/en/sql-reference/sql/insert): OVERWRITE
  "Specifies that the target table should be truncated before inserting the values into the
  table"; it is one DML statement, so one transaction, and the table stays the one it was (its
  owner, grants, policies, tags, comment, streams and Time Travel with it). The role needs INSERT
  and, "because OVERWRITE will delete the existing records in the table", DELETE on it.
- ALTER TABLE … RENAME TO (https://docs.snowflake.com/en/sql-reference/sql/alter-table): a table
  created and filled under a helper name is renamed into place in one statement, so a reader never
  sees it half loaded; the role owns it (it created it) and needs CREATE TABLE on the schema.
- MERGE (https://docs.snowflake.com/en/sql-reference/sql/merge): one statement, so one transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from data_migration.config.names import Identifier, string_literal

# Files one COPY statement may name in FILES (Snowflake's limit).
MAX_FILES_PER_COPY = 1000
# The project's record of the files each append loaded, in the target's schema (see README).
LEDGER_TABLE = "DATA_MIGRATION_LOADED_FILES"
# Rows one VALUES clause may hold (https://docs.snowflake.com/en/sql-reference/sql/insert: "limited
# to 16,384 rows"; later editions of the page say more, so the smaller number holds everywhere).
MAX_VALUES_ROWS = 16_384
# A load's helper tables: `<target>__DM_LANDING_<run>` and, for a replace that creates the target,
# `<target>__DM_NEW_<run>`.
HELPER_KINDS = ("LANDING", "NEW")
APP = "data-migration"
_SEMI_STRUCTURED = ("VARIANT", "OBJECT", "ARRAY")
_TYPE = re.compile(
    r"^(NUMBER\(\d{1,2},\d{1,2}\)|NUMBER|FLOAT|VARCHAR(\(\d{1,9}\))?|DATE|TIME(\(\d\))?"
    r"|TIMESTAMP_(NTZ|LTZ|TZ)(\(\d\))?|BOOLEAN|BINARY(\(\d{1,9}\))?|VARIANT|OBJECT|ARRAY|GEOGRAPHY|GEOMETRY)$"
)


class LoadSqlError(ValueError):
    """A column or type the project will not put in a statement."""


@dataclass(frozen=True)
class LoadColumn:
    """A column of the files: its name, and its exact Snowflake type (as the export recorded it,
    or as read from a Parquet file's schema)."""

    name: str
    snowflake_type: str
    # The files hold this column's semi-structured values as JSON text (as exports write them).
    json_text: bool = False

    @property
    def identifier(self) -> str:
        return Identifier(self.name, self.name).quoted()

    @property
    def landing_type(self) -> str:
        """Its type in the landing table: JSON text lands as text, then PARSE_JSON makes it a value."""
        return "VARCHAR" if self.json_text else self.snowflake_type

    @property
    def value(self) -> str:
        """The column as selected from the landing table into the target."""
        return f"PARSE_JSON({self.identifier})" if self.json_text else self.identifier


def load_column(name: str, snowflake_type: str, arrow_type: str | None = None) -> LoadColumn:
    """A column as recorded; raise LoadSqlError for a type outside the type table."""
    normalized = re.sub(r"\s+", "", snowflake_type.upper())
    if not _TYPE.match(normalized):
        raise LoadSqlError(f"column {name!r} has the type {snowflake_type!r}, which a load does not create")
    text = normalized in _SEMI_STRUCTURED and (arrow_type is None or arrow_type in ("string", "large_string"))
    return LoadColumn(name, normalized, json_text=text)


def qualified(name: Sequence[Identifier]) -> str:
    return ".".join(part.quoted() for part in name)


def sibling(name: Sequence[Identifier], table: str) -> tuple[Identifier, ...]:
    """A table named `table` in the same database and schema as `name` (as qualified as it is)."""
    return (*name[:-1], Identifier(table, table))


def create_table_sql(
    name: Sequence[Identifier],
    columns: Sequence[LoadColumn],
    *,
    landing: bool = False,
    anew: bool = False,
    mark: str | None = None,
) -> str:
    """The table with the files' exact types. A helper (the run's own table, under a name no reader
    uses, dropped at the end, or by the next run after a kill) is created anew, never reused: the
    landing table, TRANSIENT, holding JSON text as text and carrying the run's `mark`; or (`anew`)
    a replace's new table, renamed into place once filled. A target is created if missing."""
    kind = "TRANSIENT TABLE" if landing else "TABLE" if anew else "TABLE IF NOT EXISTS"
    body = ", ".join(f"{c.identifier} {c.landing_type if landing else c.snowflake_type}" for c in columns)
    comment = f" COMMENT = {string_literal(mark)}" if mark is not None else ""
    return f"CREATE {kind} {qualified(name)} ({body}){comment}"


def helper_mark(load: str, run_id: str) -> str:
    """The COMMENT a landing table carries: the project, the load (its target) and the run. A
    replace's new table carries none, since it becomes the target with whatever comment it has; the
    run's landing table, created before it and dropped after it, vouches for it (sweep_helpers)."""
    return json.dumps({"app": APP, "load": load, "run_id": run_id}, separators=(",", ":"))


def run_suffix(run_id: str) -> str:
    """The part of a run id that an older release's helper names carried."""
    return run_id.replace("-", "")[:12].upper()


def attempt_suffix() -> str:
    """What the helper names of one attempt of a load carry: new for every attempt, so that two
    runs of one load (a schedule's tick and a launch by hand), or two attempts of one run (Dagster
    resuming a run whose worker is still alive), never share a helper table."""
    return uuid.uuid4().hex[:12].upper()


def parse_mark(comment: object) -> dict[str, str] | None:
    """A helper's mark read back, or None when the comment is not one."""
    try:
        mark = json.loads(str(comment))
    except ValueError:
        return None
    if not isinstance(mark, dict) or mark.get("app") != APP or not isinstance(mark.get("load"), str):
        return None
    return mark


def helper_name(target: Sequence[Identifier], kind: str, suffix: str) -> tuple[Identifier, ...]:
    return sibling(target, f"{target[-1].name}__DM_{kind}_{suffix}")


def helper_kind(target: Sequence[Identifier], name: str) -> tuple[str, str] | None:
    """(kind, run suffix) of a name that is one of the target's helpers', or None."""
    kinds = "|".join(HELPER_KINDS)
    match = re.fullmatch(rf"{re.escape(target[-1].name)}__DM_({kinds})_([0-9A-F]{{12}})", name)
    return (match.group(1), match.group(2)) if match else None


def set_comment_sql(name: Sequence[Identifier], comment: str | None) -> str:
    if comment is None:
        return f"ALTER TABLE {qualified(name)} UNSET COMMENT"
    return f"ALTER TABLE {qualified(name)} SET COMMENT = {string_literal(comment)}"


def _information_schema(name: Sequence[Identifier]) -> tuple[str, str]:
    database = f"{name[-3].quoted()}." if len(name) >= 3 else ""
    schema = string_literal(name[-2].name) if len(name) >= 2 else "CURRENT_SCHEMA()"
    return f"{database}INFORMATION_SCHEMA", schema


def helpers_sql(target: Sequence[Identifier]) -> str:
    """The target and the tables beside it whose names begin as its helpers' do, with their
    comments (the target's: an older release could leave its mark there)."""
    views, schema = _information_schema(target)
    prefix = string_literal(f"{target[-1].name}__DM_")
    return (
        f"SELECT TABLE_NAME, COMMENT FROM {views}.TABLES WHERE TABLE_SCHEMA = {schema} "
        f"AND (TABLE_NAME = {string_literal(target[-1].name)} OR STARTSWITH(TABLE_NAME, {prefix})) "
        "ORDER BY TABLE_NAME"
    )


def drop_table_sql(name: Sequence[Identifier]) -> str:
    return f"DROP TABLE IF EXISTS {qualified(name)}"


def columns_sql(name: Sequence[Identifier]) -> str:
    """The table's column names in order (none when there is no such table visible to the role),
    from its database's INFORMATION_SCHEMA (the session's, for a name without one)."""
    views, schema = _information_schema(name)
    return (
        f"SELECT COLUMN_NAME FROM {views}.COLUMNS WHERE TABLE_SCHEMA = {schema} "
        f"AND TABLE_NAME = {string_literal(name[-1].name)} ORDER BY ORDINAL_POSITION"
    )


def count_sql(name: Sequence[Identifier]) -> str:
    return f"SELECT COUNT(*) AS N FROM {qualified(name)}"


def rename_sql(new: Sequence[Identifier], target: Sequence[Identifier]) -> str:
    return f"ALTER TABLE {qualified(new)} RENAME TO {qualified(target)}"


def create_stage_sql(stage: Sequence[Identifier]) -> str:
    """A temporary internal stage: the session's own, dropped with it, files and all
    (https://docs.snowflake.com/en/sql-reference/sql/create-stage)."""
    return f"CREATE TEMPORARY STAGE {qualified(stage)}"


_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")


def run_folder(stage: str, folder: str) -> str:
    """`@<stage>/<folder>/`, for a folder the project names itself (plain, so the location can
    also stand unquoted in a COPY transformation's FROM)."""
    if not _PLAIN.match(folder):
        raise LoadSqlError(f"{folder!r} is not a plain folder name")
    return f"@{stage}/{folder}/"


def put_sql(file_name: str, stage: str, folder: str) -> str:
    """Upload one file (its bytes given as the statement's stream) into `folder` of a stage. The
    location in single quotes, as https://docs.snowflake.com/en/sql-reference/sql/put asks of one
    with special characters (a quoted database or schema name may hold a space)."""
    if not _PLAIN.match(file_name):
        raise LoadSqlError(f"{file_name!r} is not a plain file name")
    location = string_literal(run_folder(stage, folder))
    return f"PUT 'file:///{file_name}' {location} AUTO_COMPRESS = FALSE OVERWRITE = TRUE"


def copy_sql(table: Sequence[Identifier], columns: Sequence[LoadColumn], stage: str, files: Sequence[str]) -> str:
    """Load the named Parquet `files` (paths relative to the `stage` location, a plain
    `@<stage>[/<folder>/]`), all rows or none, as a transformation: each column read from the
    file by its exact name (`$1:"name"`) and cast to its landing type.

    Not MATCH_BY_COLUMN_NAME, whose documented limitations make it lose values
    (https://docs.snowflake.com/en/sql-reference/sql/copy-into-table): with it "an empty column
    value (for example, "col1": "") produces an error" for Parquet, and NULL_IF (default `\\N`)
    applies, so a string `\\N` would load as NULL. The transformation's FROM takes a stage
    location without quotes, so the names with any other character are in FILES, as string
    literals."""
    if not files or len(files) > MAX_FILES_PER_COPY:
        raise LoadSqlError(f"a COPY names 1 to {MAX_FILES_PER_COPY} files, not {len(files)}")
    if not _STAGE_LOCATION.match(stage):
        raise LoadSqlError(f"{stage!r} is not a plain stage location")
    names = ", ".join(c.identifier for c in columns)
    selected = ", ".join(f"$1:{c.identifier}::{c.landing_type}" for c in columns)
    named = ", ".join(string_literal(name) for name in files)
    return (
        f"COPY INTO {qualified(table)} ({names}) FROM (SELECT {selected} FROM {stage}) FILES = ({named}) "
        "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE BINARY_AS_TEXT = FALSE) ON_ERROR = ABORT_STATEMENT"
    )


_NAME_PART = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_STAGE_LOCATION = re.compile(rf"^@{_NAME_PART}(?:\.{_NAME_PART}){{0,2}}(?:/[A-Za-z0-9_.-]+)*/?$")


def insert_sql(
    target: Sequence[Identifier],
    landing: Sequence[Identifier],
    columns: Sequence[LoadColumn],
    *,
    overwrite: bool = False,
) -> str:
    """The landing table's rows into the target's columns; with `overwrite`, in place of its rows,
    in the same statement (INSERT OVERWRITE)."""
    names = ", ".join(c.identifier for c in columns)
    values = ", ".join(c.value for c in columns)
    verb = "INSERT OVERWRITE INTO" if overwrite else "INSERT INTO"
    return f"{verb} {qualified(target)} ({names}) SELECT {values} FROM {qualified(landing)}"


def merge_sql(
    target: Sequence[Identifier],
    landing: Sequence[Identifier],
    columns: Sequence[LoadColumn],
    keys: Sequence[Identifier],
) -> str:
    """Upsert the landing table's rows into the target on `keys`, in one statement."""
    key_names = {key.name for key in keys}
    source = ", ".join(f"{c.value} AS {c.identifier}" for c in columns)
    on = " AND ".join(f"T.{key.quoted()} = S.{key.quoted()}" for key in keys)
    updates = ", ".join(f"T.{c.identifier} = S.{c.identifier}" for c in columns if c.name not in key_names)
    names = ", ".join(c.identifier for c in columns)
    values = ", ".join(f"S.{c.identifier}" for c in columns)
    matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
    return (
        f"MERGE INTO {qualified(target)} AS T USING (SELECT {source} FROM {qualified(landing)}) AS S ON {on}"
        f"{matched} WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
    )


def duplicate_keys_sql(landing: Sequence[Identifier], keys: Sequence[Identifier]) -> str:
    """Up to five key values that occur more than once (a MERGE would fail or be ambiguous)."""
    names = ", ".join(key.quoted() for key in keys)
    selected = ", ".join(f"{key.quoted()} AS K{index}" for index, key in enumerate(keys))
    return (
        f"SELECT {selected}, COUNT(*) AS N FROM {qualified(landing)} GROUP BY {names} "
        "HAVING COUNT(*) > 1 ORDER BY N DESC LIMIT 5"
    )


def null_keys_sql(landing: Sequence[Identifier], keys: Sequence[Identifier]) -> str:
    """Rows with a NULL key, which no MERGE matches (each rerun would insert them again)."""
    condition = " OR ".join(f"{key.quoted()} IS NULL" for key in keys)
    return f"SELECT COUNT(*) AS N FROM {qualified(landing)} WHERE {condition}"


def ledger_sql(target: Sequence[Identifier]) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(sibling(target, LEDGER_TABLE))} (TARGET VARCHAR, FILE VARCHAR, "
        "FILE_ID VARCHAR, ROW_COUNT NUMBER(38,0), RUN_ID VARCHAR, LOADED_AT TIMESTAMP_NTZ(9))"
    )


# The ledger's one row per target that appends lock (not a file).
LOCK_ROW = "data-migration:lock"


def lock_row_sql(target: Sequence[Identifier]) -> str:
    """The target's lock row in the ledger, made once (a second one made by a race is harmless)."""
    ledger, name = qualified(sibling(target, LEDGER_TABLE)), string_literal(qualified(target))
    return (
        f"INSERT INTO {ledger} (TARGET, FILE, FILE_ID, ROW_COUNT, RUN_ID, LOADED_AT) "
        f"SELECT {name}, {string_literal(LOCK_ROW)}, '', 0, '', SYSDATE() WHERE NOT EXISTS "
        f"(SELECT 1 FROM {ledger} WHERE TARGET = {name} AND FILE = {string_literal(LOCK_ROW)})"
    )


def lock_sql(target: Sequence[Identifier], run_id: str) -> str:
    """First in an append's transaction: UPDATE statements on a table wait for each other until
    COMMIT or ROLLBACK (https://docs.snowflake.com/en/sql-reference/transactions, resource
    locking), so two appends to one target take turns from here on."""
    ledger, name = qualified(sibling(target, LEDGER_TABLE)), string_literal(qualified(target))
    return (
        f"UPDATE {ledger} SET RUN_ID = {string_literal(run_id)}, LOADED_AT = SYSDATE() "
        f"WHERE TARGET = {name} AND FILE = {string_literal(LOCK_ROW)}"
    )


def loaded_files_sql(target: Sequence[Identifier]) -> str:
    return (
        f"SELECT FILE, FILE_ID FROM {qualified(sibling(target, LEDGER_TABLE))} "
        f"WHERE TARGET = {string_literal(qualified(target))} AND FILE <> {string_literal(LOCK_ROW)}"
    )


def record_files_sql(target: Sequence[Identifier], files: Sequence[tuple[str, str, int]], run_id: str) -> list[str]:
    """Rows of the ledger for `files` (uri, file id, rows), appended in the load's transaction:
    one INSERT per MAX_VALUES_ROWS files."""
    return [
        _record_files_sql(target, files[start : start + MAX_VALUES_ROWS], run_id)
        for start in range(0, len(files), MAX_VALUES_ROWS)
    ]


def _record_files_sql(target: Sequence[Identifier], files: Sequence[tuple[str, str, int]], run_id: str) -> str:
    rows = ", ".join(
        f"({string_literal(qualified(target))}, {string_literal(uri)}, {string_literal(file_id)}, {int(count)}, "
        f"{string_literal(run_id)}, SYSDATE())"
        for uri, file_id, count in files
    )
    return (
        f"INSERT INTO {qualified(sibling(target, LEDGER_TABLE))} "
        f"(TARGET, FILE, FILE_ID, ROW_COUNT, RUN_ID, LOADED_AT) VALUES {rows}"
    )
