"""The embedded emulator's side of loads: the statements the load path sends that fakesnow 0.12
does not serve, answered as Snowflake documents them.

- `COPY INTO <table> (…) FROM (SELECT $1:"col"::TYPE … FROM @<stage>[/<path>]) FILES = (…)`, a
  load with a transformation (https://docs.snowflake.com/en/user-guide/data-load-transform), from
  a named stage of the emulator or an internal stage named in any form Snowflake takes (quoted,
  qualified). fakesnow reads a transformation only from a stage it finds by a plain name, and
  reads `$1:"col"` as an unquoted column; the emulator gives it a stage of its own over a local
  folder holding the named files, for the one statement, and has it read keys exactly.
- MATCH_BY_COLUMN_NAME's documented limitation for Parquet, which fakesnow lacks: an empty value
  fails a COPY from one of the emulator's named stages (the project no longer sends that shape;
  the check shows why).

- `COPY INTO <table> FROM '@<stage>/<path>' …` from one of the emulator's named external stages
  (stages.py; https://docs.snowflake.com/en/sql-reference/sql/copy-into-table). fakesnow loads
  from its internal stages and from URLs, not from a stage over a folder or a bucket it does not
  know. The emulator gives fakesnow the stage's files as a local folder (the stage's own folder,
  or a copy of the objects under the path) and fakesnow runs the rest of the statement as
  written: `FILES`, `FILE_FORMAT`, `MATCH_BY_COLUMN_NAME`, `ON_ERROR`, the output row per file,
  and the statement's place in an open transaction. What differs from Snowflake: the output's
  file names are the local copies' (`file:///…/<path>/<file>`), where Snowflake names the
  stage's URL (`s3://bucket/<path>/<file>`); both end in the path relative to the stage.
- `ALTER TABLE [ IF EXISTS ] <name> SWAP WITH <other>`
  (https://docs.snowflake.com/en/sql-reference/sql/alter-table): the two tables exchange their
  names, content and metadata in one transaction; both must exist ("Object '…' does not exist or
  not authorized."), and a reader sees one table or the other, never neither. The emulator
  renames the tables through a third name inside one DuckDB transaction, through fakesnow's own
  `ALTER TABLE … RENAME TO`, so fakesnow's column metadata follows the tables.
- `SELECT … FROM TABLE(INFER_SCHEMA(LOCATION => '@<stage>[/<path>]', FILE_FORMAT => '<format>'))`
  (https://docs.snowflake.com/en/sql-reference/functions/infer_schema), as the connector's
  write_pandas sends it (dagster-snowflake-pandas' IO manager): one row per column of the staged
  Parquet files, COLUMN_NAME as in the files and TYPE in Snowflake's words for a Parquet type read
  with USE_LOGICAL_TYPE = TRUE (integers NUMBER(38, 0), doubles REAL, strings TEXT, timestamps
  TIMESTAMP_NTZ or, adjusted to UTC, TIMESTAMP_LTZ). The emulator reads the files' footers in
  fakesnow's folder for the stage.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_migration.local.stages import NAME_PART as _PART
from data_migration.local.stages import OBJECT_NAME as _NAME
from data_migration.local.stages import stage_reference

_COPY_INTO_TABLE = re.compile(r"^\s*COPY\s+INTO\s+(?!'?@)", re.IGNORECASE)
# The stage location after FROM, quoted or not (the project quotes it).
_FROM_STAGE = re.compile(r"\bFROM\s+(?:'(?P<quoted>@(?:[^'\\]|\\.|'')*)'|(?P<bare>@[^\s(),]+))", re.IGNORECASE)
_SWAP = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?P<this>{_NAME})\s+SWAP\s+WITH\s+(?P<other>{_NAME})\s*;?\s*$",
    re.IGNORECASE,
)
SUCCESS = "SELECT 'Statement executed successfully.' AS \"status\""
_INFER_SCHEMA = re.compile(
    r"^\s*SELECT\s+(?P<columns>[\w\s,]+?)\s+FROM\s+TABLE\s*\(\s*INFER_SCHEMA\s*\(\s*LOCATION\s*=>\s*(?P<location>\?|'[^']*')"
    r"\s*,\s*FILE_FORMAT\s*=>\s*(?P<format>\?|'[^']*')\s*\)\s*\)\s*;?\s*$",
    re.IGNORECASE,
)


class StatementError(Exception):
    """A statement Snowflake would refuse; `code` and `sql_state` as Snowflake reports them."""

    def __init__(self, message: str, code: int = 2003, sql_state: str = "02000"):
        super().__init__(message)
        self.code = code
        self.sql_state = sql_state


@dataclass(frozen=True)
class StageLoad:
    """Where a COPY INTO <table> reads from: the stage, the path under it, and the location as
    written in the statement (replaced by the local folder's URL)."""

    stage: str
    path: str
    span: tuple[int, int]
    reference: str = ""  # the stage's name as written, without '@' and path
    files: tuple[str, ...] | None = None  # FILES = (…), relative to the location
    transformation: bool = False  # COPY INTO <table> (…) FROM (SELECT … FROM @stage)


def stage_load(sql_text: str) -> StageLoad | None:
    """The external stage a `COPY INTO <table> FROM @stage…` reads, or None for any other statement."""
    if not _COPY_INTO_TABLE.match(sql_text):
        return None
    match = _FROM_STAGE.search(sql_text)
    if match is None:
        return None
    quoted = match.group("quoted")
    # A string literal's escapes: '' and backslash sequences, as Snowflake reads them.
    reference = re.sub(r"\\(.)", r"\1", quoted.replace("''", "'")) if quoted else match.group("bare")
    located = stage_reference(reference)
    if located is None:
        return None
    name = re.match(rf"@({_NAME})", reference).group(1)  # type: ignore[union-attr] # stage_reference matched
    files = _FILES.search(sql_text, match.end())
    return StageLoad(
        located[0],
        located[1],
        match.span(),
        name,
        tuple(re.sub(r"\\(.)", r"\1", f.replace("''", "'")) for f in _FILE.findall(files.group(1))) if files else None,
        _TRANSFORMATION.match(sql_text) is not None,
    )


_FILES = re.compile(r"\bFILES\s*=\s*\(((?:\s*'(?:[^'\\]|\\.|'')*'\s*,?)*)\)", re.IGNORECASE)
_FILE = re.compile(r"'((?:[^'\\]|\\.|'')*)'")
_TRANSFORMATION = re.compile(
    r"^\s*COPY\s+INTO\s+[^(]*?(?:\([^)]*\)\s*)?FROM\s*\(\s*SELECT\b", re.IGNORECASE | re.DOTALL
)


_MATCH_BY_NAME = re.compile(r"\bMATCH_BY_COLUMN_NAME\s*=\s*(?!NONE\b)\w+", re.IGNORECASE)
_PARQUET = re.compile(r"\bTYPE\s*=\s*'?PARQUET\b", re.IGNORECASE)


def refuse_empty_values_matched_by_name(sql_text: str, folder: Any, files: Sequence[str] | None) -> None:
    """MATCH_BY_COLUMN_NAME's documented limitation, which fakesnow does not have
    (https://docs.snowflake.com/en/sql-reference/sql/copy-into-table, MATCH_BY_COLUMN_NAME): for
    Parquet, "an empty column value (for example, "col1": "") produces an error". Raised before
    any row loads (the wording is the emulator's; the documentation gives none)."""
    if not (_MATCH_BY_NAME.search(sql_text) and _PARQUET.search(sql_text)):
        return
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(folder)
    paths = [root / name for name in files] if files is not None else sorted(root.rglob("*.parquet"))
    for path in paths:
        if not path.is_file():
            continue
        table = pq.read_table(path)
        for name, column in zip(table.column_names, table.columns, strict=True):
            if _is_string(column.type) and pc.any(pc.equal(column, "")).as_py():
                raise StatementError(
                    f"Error parsing the parquet file: an empty value in column '{name}' of {path.name} cannot be "
                    "loaded with MATCH_BY_COLUMN_NAME",
                    100069,
                    "22000",
                )


def _is_string(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def read_keys_as_quoted_names() -> None:
    """fakesnow reads a transformation's `$1:"name"` as the column `name` unquoted, so a name with
    a space, a reserved word or lower case letters misses its Parquet column; Snowflake reads the
    key exactly (https://docs.snowflake.com/en/user-guide/querying-semistructured). The emulator
    has fakesnow read it quoted (called once, when the emulator's app is made)."""
    import fakesnow.copy_into
    from sqlglot import exp

    def strip_json_extract(expr: exp.Select) -> exp.Select:
        dollar1 = exp.Parameter(this=exp.Literal(this="1", is_string=False))
        for p in expr.find_all(exp.Parameter):
            if p == dollar1 and p.parent and (key := p.parent.expression.find(exp.JSONPathKey)):
                assert p.parent.parent, expr
                p.parent.parent.args["this"] = exp.Identifier(this=key.this, quoted=True)
        return expr

    fakesnow.copy_into._strip_json_extract = strip_json_extract


def with_stage(sql_text: str, load: StageLoad, location: str) -> str:
    """The statement reading from `location` (a plain stage reference) instead of the stage."""
    start, end = load.span
    return f"{sql_text[:start]}FROM {location}{sql_text[end:]}"


_QUOTED_STAGE = re.compile(r"\bFROM\s+'(?P<location>@[^'\s\\]+)'", re.IGNORECASE)
_QUOTED_PUT = re.compile(r"^(?P<head>\s*PUT\s+'[^']*'\s+)'(?P<location>@[^'\s\\]+)'", re.IGNORECASE)


def unquoted_internal_locations(sql_text: str) -> str:
    """A `COPY INTO <table>` reading a quoted internal stage location (`FROM '@"DB"."S"."STAGE"'`),
    with the location unquoted, the form fakesnow reads; Snowflake takes both alike. Locations
    with spaces or quotes in them are left as written."""
    if _QUOTED_PUT.match(sql_text):  # PUT '<file>' '@<stage>/…': fakesnow reads the location unquoted
        return _QUOTED_PUT.sub(lambda match: f"{match.group('head')}{match.group('location')}", sql_text)
    if not _COPY_INTO_TABLE.match(sql_text):
        return sql_text
    return _QUOTED_STAGE.sub(lambda match: f"FROM {match.group('location')}", sql_text)


def from_local_folder(sql_text: str, load: StageLoad, folder_url: str) -> str:
    """The statement reading from `folder_url` (a file:// URL ending in '/') instead of the stage."""
    start, end = load.span
    return f"{sql_text[:start]}FROM '{folder_url.replace(chr(39), chr(39) * 2)}'{sql_text[end:]}"


@dataclass(frozen=True)
class Swap:
    this: str
    other: str
    if_exists: bool


def parse_swap(sql_text: str) -> Swap | None:
    match = _SWAP.match(sql_text)
    if match is None:
        return None
    return Swap(match.group("this"), match.group("other"), bool(match.group("exists")))


def swap(conn: Any, statement: Swap) -> None:
    """Exchange the two tables on fakesnow's connection `conn`, in one transaction."""
    cursor = conn.cursor()
    for name in (statement.this, statement.other):
        if not _exists(cursor, name):
            if statement.if_exists and name == statement.this:
                return
            raise StatementError(f"SQL compilation error:\nObject '{_display(name)}' does not exist or not authorized.")
    parts = re.findall(_PART, statement.this)
    temporary = ".".join([*parts[:-1], f'"DM_SWAP_{uuid.uuid4().hex[:12].upper()}"'])
    # DuckDB's transactions cover DDL: either all three renames happen, or none.
    cursor.execute("BEGIN TRANSACTION")
    try:
        cursor.execute(f"ALTER TABLE {statement.this} RENAME TO {temporary}")
        cursor.execute(f"ALTER TABLE {statement.other} RENAME TO {statement.this}")
        cursor.execute(f"ALTER TABLE {temporary} RENAME TO {statement.other}")
    except Exception:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")


def _exists(cursor: Any, name: str) -> bool:
    try:
        cursor.execute(f"SELECT 1 FROM {name} LIMIT 0")
    except Exception:  # noqa: BLE001 - fakesnow's "does not exist" is the answer asked for
        return False
    return True


def _display(name: str) -> str:
    return ".".join(part[1:-1] if part.startswith('"') else part.upper() for part in re.findall(_PART, name))


@dataclass(frozen=True)
class InferSchema:
    columns: tuple[str, ...]  # the output columns asked for (COLUMN_NAME, TYPE, …)
    location: str  # @stage[/path]


def parse_infer_schema(sql_text: str, bindings: dict | None) -> InferSchema | None:
    match = _INFER_SCHEMA.match(sql_text)
    if match is None:
        return None
    values = [b.get("value") for _, b in sorted((bindings or {}).items(), key=lambda item: int(item[0]))]
    location = match.group("location")
    if location == "?":
        location = values.pop(0) if values else ""
    else:
        location = location[1:-1]
    columns = tuple(c.strip().upper() for c in match.group("columns").split(","))
    return InferSchema(columns, location)


def infer_schema_sql(statement: InferSchema, folder: Any) -> str:
    """INFER_SCHEMA's rows for the Parquet files in `folder` (a Path), as a query fakesnow answers."""
    import pyarrow.parquet as pq

    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        raise StatementError(f"SQL compilation error:\nNo files found at {statement.location}.", 2003, "02000")
    schema = pq.read_schema(files[0])
    rows = []
    for order, field in enumerate(schema):
        values = {
            "COLUMN_NAME": field.name,
            "TYPE": _inferred_type(field.type),
            "NULLABLE": True,
            "EXPRESSION": f'$1:"{field.name}"::{_inferred_type(field.type)}',
            "FILENAMES": files[0].name,
            "ORDER_ID": order,
        }
        rows.append(", ".join(_literal(values[column]) for column in statement.columns))
    names = ", ".join(statement.columns)
    return f"SELECT * FROM (VALUES {', '.join(f'({row})' for row in rows)}) AS T({names})"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _inferred_type(kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_integer(kind):
        return "NUMBER(38, 0)"
    if pa.types.is_decimal(kind):
        return f"NUMBER({kind.precision}, {kind.scale})"
    if pa.types.is_floating(kind):
        return "REAL"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP_LTZ" if kind.tz else "TIMESTAMP_NTZ"
    if pa.types.is_time(kind):
        return "TIME"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "BINARY"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "TEXT"
    return "VARIANT"
