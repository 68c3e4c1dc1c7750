"""Snowflake identifiers and the "one read-only statement" rule.

Nothing here talks to Snowflake: these functions decide, before any network call, which SQL text
an export may send.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

# Snowflake's rule for an unquoted identifier; such a name is stored and resolved in upper case.
_BARE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
MAX_IDENTIFIER_LENGTH = 255

# Statement types that only read. WITH ... SELECT parses as a Select carrying a `with` argument.
_READ_ONLY_ROOTS = (exp.Select, exp.Union, exp.Intersect, exp.Except)
# Snowflake's system functions are control functions, which act on the account (abort a session,
# cancel queries), and information functions (https://docs.snowflake.com/en/sql-reference/functions-system).
# An export's query may call these information functions only; any other SYSTEM$ call is refused.
READ_ONLY_SYSTEM_FUNCTIONS = frozenset(
    {"SYSTEM$TYPEOF", "SYSTEM$CLUSTERING_DEPTH", "SYSTEM$CLUSTERING_INFORMATION", "SYSTEM$LAST_CHANGE_COMMIT_TIME"}
)


class SqlError(ValueError):
    """A table name or query that the project will not send to Snowflake."""


@dataclass(frozen=True)
class Identifier:
    """One part of a (possibly qualified) Snowflake object name, case already resolved."""

    name: str  # as Snowflake stores it
    written: str  # as the user wrote it, without quotes

    def quoted(self) -> str:
        return '"' + self.name.replace('"', '""') + '"'


def parse_object_name(text: str) -> tuple[Identifier, ...]:
    """Parse `ORDERS`, `db.schema.orders` or `"Mixed Case"."x"` as Snowflake does.

    Unquoted parts must be plain identifiers and resolve to upper case; quoted parts keep their
    case, and `""` inside them is a literal quote. Anything else (`orders; drop table t`, a
    backtick, a newline outside quotes) is rejected rather than pasted into SQL.
    """
    if not text or not text.strip():
        raise SqlError("is empty")
    if text != text.strip():
        raise SqlError(f"{text!r} has leading or trailing whitespace")
    parts: list[Identifier] = []
    pos = 0
    while True:
        if pos < len(text) and text[pos] == '"':
            end = pos + 1
            chars: list[str] = []
            while True:
                if end >= len(text):
                    raise SqlError(f"{text!r} has an unclosed double quote")
                if text[end] == '"':
                    if end + 1 < len(text) and text[end + 1] == '"':
                        chars.append('"')
                        end += 2
                        continue
                    break
                chars.append(text[end])
                end += 1
            name = written = "".join(chars)
            if not name:
                raise SqlError(f"{text!r} has an empty quoted identifier")
            if any(ord(c) < 32 for c in name):
                raise SqlError(f"{text!r} has a control character in a quoted identifier")
            pos = end + 1
        else:
            match = _BARE_IDENTIFIER.match(text, pos)
            if not match:
                raise SqlError(
                    f"{text!r} is not a Snowflake object name: use letters, digits, _ and $, "
                    'or double-quote a part ("My Table"), or write a query instead'
                )
            written = match.group(0)
            name = written.upper()
            pos = match.end()
        if len(name) > MAX_IDENTIFIER_LENGTH:
            raise SqlError(f"{text!r} has a part longer than {MAX_IDENTIFIER_LENGTH} characters")
        parts.append(Identifier(name, written))
        if pos == len(text):
            break
        if text[pos] != ".":
            raise SqlError(f"{text!r} is not a Snowflake object name: unexpected {text[pos]!r} at position {pos}")
        pos += 1
    if len(parts) > 3:
        raise SqlError(f"{text!r} has more than three parts (database.schema.table)")
    return tuple(parts)


def home_name(setting: str | None) -> str | None:
    """A database or schema setting (SNOWFLAKE_DATABASE, SNOWFLAKE_SCHEMA) as Snowflake stores
    it: `analytics` is ANALYTICS, `"Mixed"` is Mixed; None when unset or not one plain name."""
    if not setting:
        return None
    try:
        parts = parse_object_name(setting)
    except SqlError:
        return None
    return parts[0].name if len(parts) == 1 else None


def resolve_name(table: tuple[str, ...], database: str | None, schema: str | None) -> tuple[str, ...]:
    """A table's name parts (as Snowflake stores them) completed as a session in `database` and
    `schema` resolves them: `T` is DATABASE.SCHEMA.T, `S.T` is DATABASE.S.T. A part the settings
    do not give stays missing (the name is then as specific as it can be made)."""
    if len(table) == 1 and schema is not None:
        table = (schema, *table)
    if len(table) == 2 and database is not None:
        table = (database, *table)
    return table


@dataclass(frozen=True)
class Home:
    """The database and schema a session starts in (the settings'), as Snowflake stores them;
    None where the settings give none."""

    database: str | None = None
    schema: str | None = None

    @classmethod
    def of(cls, snowflake: Any) -> Home:
        """From a Snowflake resource's `database` and `schema_` (dagster-snowflake's fields)."""
        return cls(home_name(getattr(snowflake, "database", None)), home_name(getattr(snowflake, "schema_", None)))

    def resolve(self, table: tuple[str, ...]) -> tuple[str, ...]:
        return resolve_name(table, self.database, self.schema)


NO_HOME = Home()  # names matched as they are written


def string_literal(text: str) -> str:
    """A Snowflake single-quoted string literal; backslash is Snowflake's escape character."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def select_all_from(name: tuple[Identifier, ...]) -> str:
    """The query for an export without `query`: every column, every part quoted."""
    return "SELECT * FROM " + ".".join(part.quoted() for part in name)


def null_count_sql(query: str, column: Identifier) -> str:
    """How many rows of a query have a NULL in `column` (a partition column or a cursor: such
    rows fall in no partition and no increment)."""
    return f"SELECT COUNT(*) FROM ({query}) WHERE {column.quoted()} IS NULL"


def validate_read_only_query(query: str) -> str:
    """Return the query as it will be sent, or raise SqlError if it is not one read-only statement.

    Snowflake's own MULTI_STATEMENT_COUNT=1 and a read-only role back this up in production, but
    the emulator runs `select 1; drop table t` happily, so this check is the one that must hold.
    """
    text = query.strip()
    if not text:
        raise SqlError("is empty")
    sqlglot_logger = logging.getLogger("sqlglot")
    previous = sqlglot_logger.level
    sqlglot_logger.setLevel(logging.ERROR)  # it warns when falling back to an opaque Command
    try:
        # A comment after the last semicolon parses as a statement of its own (a Semicolon).
        parsed = sqlglot.parse(text, read="snowflake")
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first else ""
        raise SqlError(f"could not be parsed as Snowflake SQL{where}: {first.get('description', error)}") from None
    except TokenError as error:  # an unterminated comment or string: the tokenizer's own error
        raise SqlError(f"could not be parsed as Snowflake SQL: {_token_problem(text, error)}") from None
    finally:
        sqlglot_logger.setLevel(previous)
    if len(statements) != 1:
        raise SqlError(
            f"must be exactly one statement, found {len(statements)}: "
            + ", ".join(type(s).__name__.upper() for s in statements)
        )
    statement = statements[0]
    if not isinstance(statement, _READ_ONLY_ROOTS):
        raise SqlError(f"must be a SELECT (or WITH ... SELECT), not {type(statement).__name__.upper()}")
    if statement.find(exp.Into) is not None:
        raise SqlError("must not use SELECT ... INTO, which creates a table")
    _refuse_stages_and_control_functions(statement)
    return statement_text(text)


def _token_problem(text: str, error: TokenError) -> str:
    """Why sqlglot's tokenizer stopped, in the list's words (its own message quotes the query)."""
    if text.count("/*") > text.count("*/"):
        return "a /* comment is not closed with */"
    if text.replace("\\'", "").count("'") % 2:
        return "a ' string is not closed"
    if text.count('"') % 2:
        return 'a " quoted name is not closed'
    return str(error)


def _refuse_stages_and_control_functions(statement: exp.Expression) -> None:
    """A SELECT that reads a stage (`FROM @stage/path`, or a table function over a stage location)
    reads files the stage reaches, not tables the role was granted; a SYSTEM$ control function
    acts on the account. Both are refused: an export reads tables and views. What the role may
    read and call stays the role's job (see docs/permissions.md)."""
    for source in statement.find_all(exp.From, exp.Join):
        for node in source.this.walk():
            text = node.name if isinstance(node, (exp.Var, exp.Literal)) else ""
            if isinstance(node, (exp.Var, exp.Literal)) and text.lstrip().startswith("@"):
                raise SqlError(
                    f"reads the stage {text.strip()!r}: an export's query reads tables and views, not staged files "
                    "(load files into a table with `loads:` first)"
                )
    for function in statement.find_all(exp.Anonymous):
        name = function.name.upper()
        if name.startswith("SYSTEM$") and name not in READ_ONLY_SYSTEM_FUNCTIONS:
            raise SqlError(
                f"calls {function.name}, a Snowflake system function that is not one of the information functions "
                f"an export may call ({', '.join(sorted(READ_ONLY_SYSTEM_FUNCTIONS))}); control functions act on "
                "the account (https://docs.snowflake.com/en/sql-reference/functions-system)"
            )


def statement_text(text: str) -> str:
    """The user's own text (their formatting, their comments) up to the statement's last token:
    without the semicolons, comments and blank lines after it. Every wrapper puts the query inside
    `( … )`, where a trailing `-- comment` (or `// comment`) would swallow the `)` and what follows."""
    from sqlglot.dialects.snowflake import Snowflake

    tokens = Snowflake().tokenize(text)
    while tokens and tokens[-1].token_type == sqlglot.TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        raise SqlError("is empty")
    return text[: tokens[-1].end + 1]


def read_tables(query: str) -> list[tuple[str, ...]]:
    """The tables a query reads (not its CTEs), each as its name parts as Snowflake stores them."""
    tree = sqlglot.parse_one(query, read="snowflake")
    ctes = {cte.alias_or_name.upper() for cte in tree.find_all(exp.CTE)}
    tables = []
    for table in tree.find_all(exp.Table):
        parts = [part for part in (table.args.get("catalog"), table.args.get("db"), table.this) if part is not None]
        if not all(isinstance(part, exp.Identifier) for part in parts):
            continue  # a table function or a stage, not a table
        names = tuple(part.name if part.quoted else part.name.upper() for part in parts)
        if len(names) == 1 and names[0] in ctes:
            continue
        tables.append(names)
    return tables


# Functions whose answer moves without any change to a table
# (https://docs.snowflake.com/en/user-guide/querying-persisted-results: "non-reusable functions,
# which return different results for successive runs of the same query"; the time functions, the
# random and sequence ones of https://docs.snowflake.com/en/sql-reference/functions-data-generation).
_MOVING = {
    "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP", "SYSDATE", "GETDATE",
    "SYSTIMESTAMP", "RAND", "RANDOM", "RANDSTR", "UUID", "UUID_STRING", "UNIFORM", "NORMAL", "ZIPF",
    "SEQ1", "SEQ2", "SEQ4", "SEQ8", "GENERATOR", "RESULT_SCAN", "LAST_QUERY_ID",
}  # fmt: skip


def unchangeable_reason(query: str) -> str | None:
    """Why a query's answer can move without any DML to the tables it reads (so an unchanged
    table does not mean an unchanged answer), or None when it reads only tables."""
    tree = sqlglot.parse_one(query, read="snowflake")
    for function in tree.find_all(exp.Func):
        name = (function.name if isinstance(function, exp.Anonymous) else function.sql_name()).upper()
        if name in _MOVING or name.startswith(("CURRENT_", "SYSTEM$")):
            written = function.sql("snowflake").split("(")[0]
            return f"its answer can change without any change to a table: it calls {written}"
    for source in tree.find_all(exp.From, exp.Join):
        if not isinstance(source.this, (exp.Table, exp.Subquery, exp.Lateral)):
            return f"it reads {source.this.sql('snowflake')}, a table function, not a table"
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            return f"it reads {table.sql('snowflake')}, which is not a table"
        if table.args.get("when") is not None or table.args.get("sample") is not None:
            return f"it reads {table.sql('snowflake')}, whose rows change with time or chance"
        if table.db.upper() == "INFORMATION_SCHEMA" or table.catalog.upper() == "SNOWFLAKE":
            return f"it reads {table.sql('snowflake')}, Snowflake's own metadata"
    return None
