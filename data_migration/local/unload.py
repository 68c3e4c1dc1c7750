"""The embedded emulator's `COPY INTO <location>`: a query's result unloaded into Parquet files on a
named stage, as Snowflake documents it (https://docs.snowflake.com/en/sql-reference/sql/copy-into-location).

fakesnow 0.12 cannot unload, so the emulator's app (server.py) answers this one statement itself,
at the server: the client sends exactly what it sends to Snowflake and receives only the
statement's output rows, never the data. What it follows from Snowflake's documentation:

- `COPY INTO @<stage>[/<path>] FROM ( <query> )`, for the stages the emulator knows (`Stage`:
  a named external stage and the bucket folder or S3 bucket its URL names). A path ending in
  `/` is a folder and the files are named `data_…`; otherwise its last part is the files' prefix.
- `FILE_FORMAT = ( TYPE = PARQUET [ COMPRESSION = AUTO | SNAPPY | NONE ] )`: Snappy by default,
  files named `….snappy.parquet` (`….parquet` without compression). Only Parquet is served
  (CSV and JSON are refused by name). TIMESTAMP_TZ and TIMESTAMP_LTZ columns cannot be unloaded
  to Parquet: the statement fails and writes nothing, as in Snowflake; cast them first.
- `HEADER = TRUE` keeps the result's column names; without it the columns are `_COL_0`, `_COL_1`, ….
- `MAX_FILE_SIZE = <bytes>` (default 16777216): a file is closed before it would pass the limit,
  and the next one begins (at least one row group per file).
- `INCLUDE_QUERY_ID = TRUE`: the statement's query id is in every file name
  (`data_<query id>_0_0_0.snappy.parquet`), the same id the client sees as the query's.
- `DETAILED_OUTPUT = TRUE`: one output row per file (FILE_NAME, relative to the stage; FILE_SIZE;
  ROW_COUNT); otherwise one row (ROWS_UNLOADED, INPUT_BYTES, OUTPUT_BYTES).
- A result with no rows writes no file (and outputs no row with DETAILED_OUTPUT).
- Fixed-point NUMBER columns are written as Parquet DECIMAL(p,s), as Snowflake writes them.
"""

from __future__ import annotations

import io
import posixpath
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_migration.local.stages import Stage, stage_reference

DEFAULT_MAX_FILE_SIZE = 16 * 1024 * 1024
_COPY_INTO_STAGE = re.compile(r"^\s*COPY\s+INTO\s+'?@", re.IGNORECASE)  # the location may be quoted
_ROWS_PER_GROUP = 65_536


class UnloadError(Exception):
    """A statement Snowflake would refuse; `code` and `sql_state` as Snowflake reports them."""

    def __init__(self, message: str, code: int = 1003, sql_state: str = "42000"):
        super().__init__(message)
        self.code = code
        self.sql_state = sql_state


def is_unload(sql_text: str) -> bool:
    return bool(_COPY_INTO_STAGE.match(sql_text))


@dataclass(frozen=True)
class Unload:
    """The parsed statement."""

    stage: str
    path: str  # relative to the stage's URL, "" for its root
    query: str
    compression: str
    header: bool
    max_file_size: int
    detailed_output: bool
    include_query_id: bool


def parse(sql_text: str) -> Unload:
    """Read a `COPY INTO @stage… FROM (query) …` statement; raise UnloadError for what the
    emulator does not serve or Snowflake would refuse."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql_text, read="snowflake")
    except sqlglot.errors.ParseError as error:
        raise UnloadError(f"SQL compilation error: {error}", 1003) from None
    if not isinstance(tree, exp.Copy) or not tree.args.get("kind"):
        raise UnloadError("SQL compilation error: not a COPY INTO <location> statement")
    target = tree.this.this
    # The location as written, or in single quotes (for a path with spaces or other characters).
    if isinstance(target, exp.Literal) and target.is_string:
        reference = target.this
    else:
        reference = target.name if isinstance(target, exp.Var) else tree.this.sql(dialect="snowflake")
    located = stage_reference(reference)
    if located is None:
        raise UnloadError(f"SQL compilation error: {reference!r} is not a stage location")
    sources = tree.args.get("files") or []
    if len(sources) != 1 or not isinstance(sources[0], exp.Subquery):
        raise UnloadError("the embedded emulator unloads a query: COPY INTO @stage FROM ( <query> )")
    options: dict[str, Any] = {}
    file_format: dict[str, str] = {}
    for parameter in tree.args.get("params") or []:
        name = parameter.this.name.upper()
        if name == "FILE_FORMAT":
            for prop in parameter.expressions:
                file_format[prop.this.name.upper()] = prop.args["value"].name.upper()
        else:
            value = parameter.args.get("expression")
            options[name] = value.this if isinstance(value, exp.Boolean) else value.name if value is not None else None
    kind = file_format.get("TYPE", "CSV")
    if kind != "PARQUET":
        raise UnloadError(f"the embedded emulator unloads FILE_FORMAT = (TYPE = PARQUET) only, not {kind}")
    compression = file_format.get("COMPRESSION", "AUTO")
    if compression not in ("AUTO", "SNAPPY", "NONE"):
        raise UnloadError(
            f"the embedded emulator writes Parquet with COMPRESSION AUTO, SNAPPY or NONE, not {compression}"
        )
    unknown = sorted(set(options) - {"HEADER", "MAX_FILE_SIZE", "DETAILED_OUTPUT", "INCLUDE_QUERY_ID", "OVERWRITE"})
    if unknown:
        raise UnloadError(f"the embedded emulator does not serve the copy option(s) {', '.join(unknown)}")
    max_file_size = int(options.get("MAX_FILE_SIZE") or DEFAULT_MAX_FILE_SIZE)
    if max_file_size <= 0:
        raise UnloadError(f"MAX_FILE_SIZE {max_file_size} must be positive")
    return Unload(
        stage=located[0],
        path=located[1],
        query=sources[0].this.sql(dialect="snowflake"),
        compression="NONE" if compression == "NONE" else "SNAPPY",
        header=bool(options.get("HEADER", False)),
        max_file_size=max_file_size,
        detailed_output=bool(options.get("DETAILED_OUTPUT", False)),
        include_query_id=bool(options.get("INCLUDE_QUERY_ID", False)),
    )


@dataclass(frozen=True)
class UnloadedFile:
    name: str  # relative to the stage's URL
    size: int
    rows: int


def unload(statement: Unload, table: pa.Table, zoned: list[str], stage: Stage, query_id: str) -> list[UnloadedFile]:
    """Write `table` (the query's result; `zoned` names its TIMESTAMP_TZ/_LTZ columns) to
    `stage` as the statement says; return the files written, in order."""
    if zoned:
        raise UnloadError(
            f"Unloading TIMESTAMP_TZ or TIMESTAMP_LTZ data to Parquet is not supported (column(s) "
            f"{', '.join(zoned)}); cast them to TIMESTAMP_NTZ",
            2003,
        )
    if table.num_rows == 0:
        return []
    if not statement.header:
        table = table.rename_columns([f"_COL_{index}" for index in range(table.num_columns)])
    folder, prefix = (
        (statement.path, "data")
        if not statement.path or statement.path.endswith("/")
        else (
            posixpath.dirname(statement.path) + "/" if "/" in statement.path else "",
            posixpath.basename(statement.path),
        )
    )
    stem = f"{prefix}_{query_id}" if statement.include_query_id else prefix
    extension = ".snappy.parquet" if statement.compression == "SNAPPY" else ".parquet"
    compression = "snappy" if statement.compression == "SNAPPY" else "none"
    files: list[UnloadedFile] = []
    # Row groups sized so that several fit in a file under the limit.
    per_row = max(table.nbytes / max(table.num_rows, 1), 1.0)
    group_rows = int(max(1, min(_ROWS_PER_GROUP, statement.max_file_size / 4 / per_row)))
    offset = 0
    while offset < table.num_rows:
        buffer = io.BytesIO()
        rows = 0
        with pq.ParquetWriter(buffer, table.schema, compression=compression) as writer:
            while offset < table.num_rows:
                group = table.slice(offset, group_rows)
                before = buffer.tell()
                if rows and before + (before / rows) * group.num_rows > statement.max_file_size:
                    break  # the next row group would take the file past MAX_FILE_SIZE
                writer.write_table(group, row_group_size=group.num_rows)
                rows += group.num_rows
                offset += group.num_rows
        data = buffer.getvalue()
        name = f"{folder}{stem}_0_0_{len(files)}{extension}"
        stage.put(name, data)
        files.append(UnloadedFile(name, len(data), rows))
    return files


def new_query_id() -> str:
    return str(uuid.uuid4())


def as_snowflake_writes(table: Any, columns: list[dict]) -> Any:
    """The result as Snowflake unloads it to Parquet: fixed-point NUMBERs as DECIMAL(p,s)."""
    import pyarrow as pa

    arrays = []
    for column, info in zip(table.columns, columns, strict=True):
        if info["type"] == "fixed" and info.get("precision") is not None:
            column = column.cast(pa.decimal128(info["precision"], info.get("scale") or 0))
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=[info["name"] for info in columns])


def output_sql(statement: Unload, files: list[UnloadedFile], table: Any) -> str:
    """The statement's output as a query fakesnow answers: a row per file, or one in all."""
    if statement.detailed_output:
        if not files:
            return (
                "SELECT CAST(NULL AS VARCHAR) AS FILE_NAME, CAST(NULL AS NUMBER) AS FILE_SIZE, "
                "CAST(NULL AS NUMBER) AS ROW_COUNT WHERE 1 = 0"
            )
        values = ", ".join(f"('{f.name.replace(chr(39), chr(39) * 2)}', {f.size}, {f.rows})" for f in files)
        return f"SELECT * FROM (VALUES {values}) AS T(FILE_NAME, FILE_SIZE, ROW_COUNT)"
    output_bytes = sum(f.size for f in files)
    return (
        f'SELECT {sum(f.rows for f in files)} AS "rows_unloaded", {table.nbytes} AS "input_bytes", '
        f'{output_bytes} AS "output_bytes"'
    )
