"""The embedded emulator's Snowflake rules around sessions and statements, where Snowflake is
stricter than fakesnow 0.12 and the load path depends on the difference:

- A DDL statement commits the session's open transaction
  (https://docs.snowflake.com/en/sql-reference/transactions: "Each DDL statement executes as a
  separate transaction … implicitly commits the active transaction"). fakesnow runs DDL inside
  DuckDB's transaction, so a later ROLLBACK undid it and the rows before it.
- Temporary stages belong to their session and are dropped, with their files, when it ends
  (https://docs.snowflake.com/en/sql-reference/sql/create-stage). fakesnow keeps every stage for
  the life of the server; the emulator records which session made a temporary stage and drops it
  at that session's logout.
- A VALUES clause holds at most 16,384 rows (https://docs.snowflake.com/en/sql-reference/sql/insert,
  in the edition the project follows; later editions allow more).
- `ALTER TABLE … UNSET COMMENT` (https://docs.snowflake.com/en/sql-reference/sql/alter-table),
  which fakesnow does not parse, and a comment that moves with its table through a SWAP
  (fakesnow keeps comments by table name).
- An INSERT OVERWRITE is one statement (https://docs.snowflake.com/en/sql-reference/sql/insert:
  OVERWRITE "Specifies that the target table should be truncated before inserting the values into
  the table"; INSERT is DML, and a DML statement in autocommit mode is a transaction of its own:
  sql-reference/transactions), so a failing one changes nothing. fakesnow runs it as a DELETE and
  then an INSERT, and in autocommit mode the DELETE committed alone: a failing INSERT (a value that
  does not cast) left the table empty. The emulator runs the two in one transaction.

Each function works on fakesnow's connection for one session; server.py calls them.
"""

from __future__ import annotations

import json
import re
import shutil
from contextlib import suppress
from typing import Any

from data_migration.local.loading import StatementError
from data_migration.local.stages import NAME_PART as _PART
from data_migration.local.stages import OBJECT_NAME as _NAME

MAX_VALUES_ROWS = 16_384

_DDL = re.compile(r"^\s*(?:CREATE|DROP|ALTER(?!\s+SESSION\b)|COMMENT|UNDROP|GRANT|REVOKE)\b", re.IGNORECASE)
_TEMPORARY_STAGE = re.compile(
    rf"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP|TEMPORARY)\s+STAGE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})",
    re.IGNORECASE,
)
_UNSET_COMMENT = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<name>{_NAME})\s+UNSET\s+COMMENT\s*;?\s*$", re.IGNORECASE
)
_INSERT_OVERWRITE = re.compile(r"^\s*INSERT\s+OVERWRITE\s+INTO\b", re.IGNORECASE)
_INSERT_VALUES = re.compile(r"^\s*INSERT\s+(?:OVERWRITE\s+)?INTO\b.*?\bVALUES\b", re.IGNORECASE | re.DOTALL)
_STAGES = "_fs_global._fs_information_schema._fs_stages"
_COMMENTS = "_fs_global._fs_information_schema._fs_tables_ext"


def names(text: str, conn: Any) -> tuple[str, str, str]:
    """(database, schema, object) as fakesnow stores them, the session's for missing parts."""
    parts = [p[1:-1].replace('""', '"') if p.startswith('"') else p.upper() for p in re.findall(_PART, text)]
    parts = [conn.database, conn.schema][: 3 - len(parts)] + parts
    return parts[0], parts[1], parts[2]


_BEGIN = re.compile(r"^\s*(?:BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_END = re.compile(r"^\s*(?:COMMIT|ROLLBACK)\b", re.IGNORECASE)


class Transactions:
    """Which sessions have an explicit transaction open (BEGIN … COMMIT or ROLLBACK). fakesnow
    keeps no such record for a session in autocommit mode, which is every client's default."""

    def __init__(self) -> None:
        self._open: set[str] = set()

    def is_open(self, token: str) -> bool:
        return token in self._open

    def before(self, token: str, conn: Any, sql_text: str) -> None:
        """Before `sql_text` runs: a DDL statement first commits the open transaction."""
        if token in self._open and _DDL.match(sql_text):
            conn.cursor().execute("COMMIT")
            self._open.discard(token)
        elif _BEGIN.match(sql_text):
            self._open.add(token)
        elif _END.match(sql_text):
            self._open.discard(token)

    def end(self, token: str, conn: Any) -> None:
        """The session ends: its open transaction is rolled back."""
        if token in self._open:
            self._open.discard(token)
            conn.cursor().execute("ROLLBACK")


def temporary_stage(sql_text: str, conn: Any) -> tuple[str, str, str] | None:
    """The stage a `CREATE TEMPORARY STAGE` names, or None for any other statement."""
    match = _TEMPORARY_STAGE.match(sql_text)
    return names(match.group("name"), conn) if match else None


def drop_stages(conn: Any, stages: list[tuple[str, str, str]]) -> None:
    """The session's temporary stages, at its end: their rows and their files."""
    from fakesnow.transforms.stage import internal_dir

    for database, schema, name in stages:
        with suppress(Exception):
            conn._duck_conn.execute(
                f"DELETE FROM {_STAGES} WHERE name = ? AND database_name = ? AND schema_name = ?",
                [name, database, schema],
            )
        with suppress(FileNotFoundError):
            shutil.rmtree(internal_dir(f"{database}.{schema}.{name}"))


def check_values_rows(sql_text: str) -> None:
    """Refuse an INSERT … VALUES of more rows than Snowflake allows."""
    if not _INSERT_VALUES.match(sql_text) or sql_text.count("(") <= MAX_VALUES_ROWS:
        return
    import sqlglot
    from sqlglot import exp

    values = sqlglot.parse_one(sql_text, read="snowflake").find(exp.Values)
    rows = len(values.expressions) if values is not None else 0
    if rows > MAX_VALUES_ROWS:
        raise StatementError(
            f"SQL compilation error:\nNumber of rows in VALUES clause ({rows}) exceeds the limit of "
            f"{MAX_VALUES_ROWS:,}.",
            1003,
            "42000",
        )


def unset_comment(sql_text: str, conn: Any) -> bool:
    """Answer `ALTER TABLE … UNSET COMMENT` (True) by removing the table's comment."""
    match = _UNSET_COMMENT.match(sql_text)
    if match is None:
        return False
    database, schema, table = names(match.group("name"), conn)
    conn._duck_conn.execute(
        f"DELETE FROM {_COMMENTS} WHERE ext_table_catalog = ? AND ext_table_schema = ? AND ext_table_name = ?",
        [database, schema, table],
    )
    return True


def swap_comments(conn: Any, this: str, other: str) -> None:
    """After a SWAP: each table keeps its own comment under its new name."""
    first, second = names(this, conn), names(other, conn)
    cursor = conn._duck_conn
    where = "ext_table_catalog = ? AND ext_table_schema = ? AND ext_table_name = ?"
    comments = [
        cursor.execute(f"SELECT comment FROM {_COMMENTS} WHERE {where}", list(name)).fetchone()
        for name in (first, second)
    ]
    for name, comment in ((first, comments[1]), (second, comments[0])):
        cursor.execute(f"DELETE FROM {_COMMENTS} WHERE {where}", list(name))
        if comment is not None:
            cursor.execute(f"INSERT INTO {_COMMENTS} VALUES (?, ?, ?, ?)", [*name, comment[0]])


class AtomicOverwrite:
    """An INSERT OVERWRITE run outside a transaction, in one of its own: begun before fakesnow runs
    the statement (its DELETE and INSERT then share it), committed when the statement succeeded and
    rolled back when it failed, before the client hears the answer."""

    def __init__(self, conn: Any) -> None:
        self._duck = conn._duck_conn
        self._duck.execute("BEGIN TRANSACTION")
        self._ended = False

    def end(self, succeeded: bool) -> None:
        if not self._ended:
            self._ended = True
            self._duck.execute("COMMIT" if succeeded else "ROLLBACK")

    def sending(self, send: Any) -> Any:
        """`send`, holding the answer until it is whole, then ending the transaction as it says."""
        held: list[dict] = []

        async def ending(message: dict) -> None:
            if message["type"] not in ("http.response.start", "http.response.body"):
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.start" or message.get("more_body"):
                return
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            try:
                succeeded = held[0].get("status", 200) == 200 and json.loads(body).get("success") is True
            except (ValueError, AttributeError):
                succeeded = False
            self.end(succeeded)
            for held_message in held:
                await send(held_message)

        return ending


def atomic_overwrite(sql_text: str, conn: Any, *, in_transaction: bool) -> AtomicOverwrite | None:
    """For an INSERT OVERWRITE in autocommit mode, its transaction (begun); None for any other
    statement, or inside a transaction, which holds the DELETE and the INSERT already."""
    if not _INSERT_OVERWRITE.match(sql_text) or in_transaction or not getattr(conn, "_autocommit", True):
        return None
    return AtomicOverwrite(conn)
