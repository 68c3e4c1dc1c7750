"""The embedded emulator's change tokens, as Snowflake documents them (local/changes.py), through
the real connector:

- SYSTEM$LAST_CHANGE_COMMIT_TIME
  (https://docs.snowflake.com/en/sql-reference/functions/system_last_change_commit_time): a token
  that differs between two calls when "the table or view changed between the two calls", and
  "increases" with each DML operation on the table or on a view's underlying tables;
- INFORMATION_SCHEMA.TABLES.LAST_ALTERED
  (https://docs.snowflake.com/en/sql-reference/info-schema/tables): for DML "the timestamp at the
  beginning of the statement execution rather than the time of the commit", and "updated even
  when no rows are affected".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from snowflake.connector.errors import ProgrammingError

from data_migration_tests.support import LOAD_DB, Snowflake


@pytest.fixture
def session(fake_snowflake: Snowflake, schema: str) -> Iterator[Any]:
    with contextlib.closing(fake_snowflake.connect(LOAD_DB, schema)) as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE T (ID NUMBER, V VARCHAR)")
        yield cursor


def token(cursor: Any, name: str = "T") -> int:
    cursor.execute(f"SELECT SYSTEM$LAST_CHANGE_COMMIT_TIME('{name}') AS TOKEN")
    (row,) = cursor.fetchall()
    return int(row[0])


def test_every_change_moves_the_token_and_a_read_does_not(session: Any):
    seen = [token(session)]
    session.execute("SELECT * FROM T")
    assert token(session) == seen[-1]
    for statement in [
        "INSERT INTO T VALUES (1, 'a'), (2, 'b')",
        "UPDATE T SET V = 'c' WHERE ID = 1",
        "DELETE FROM T WHERE ID = 99",  # no row affected: still a DML operation on the table
        "MERGE INTO T USING (SELECT 2 AS ID) S ON T.ID = S.ID WHEN MATCHED THEN UPDATE SET V = 'd'",
        "TRUNCATE TABLE T",
        "CREATE OR REPLACE TABLE T (ID NUMBER, V VARCHAR)",
    ]:
        session.execute(statement)
        seen.append(token(session))
        assert seen[-1] > seen[-2], statement
        assert token(session) == seen[-1], f"read twice after {statement}"


def test_a_change_in_a_transaction_moves_the_token_at_its_commit(session: Any, fake_snowflake: Snowflake):
    before = token(session)
    session.execute("BEGIN")
    session.execute("INSERT INTO T VALUES (1, 'a')")
    with contextlib.closing(fake_snowflake.connect(LOAD_DB, session.connection.schema)) as other:
        assert token(other.cursor()) == before, "another session sees no change before the commit"
    session.execute("COMMIT")
    committed = token(session)
    assert committed > before
    session.execute("BEGIN")
    session.execute("INSERT INTO T VALUES (2, 'b')")
    session.execute("ROLLBACK")
    assert token(session) == committed, "a rolled back change moves nothing"
    session.execute("BEGIN")
    session.execute("INSERT INTO T VALUES (3, 'c')")
    session.execute("CREATE TABLE U (X NUMBER)")  # commits the open transaction first
    assert token(session) > committed


def test_a_swap_moves_both_tables_and_a_view_follows_its_tables(session: Any):
    session.execute("CREATE TABLE T_NEW (ID NUMBER, V VARCHAR)")
    session.execute("CREATE VIEW W AS SELECT ID FROM T")
    first, view = token(session), token(session, "W")
    assert view >= first
    session.execute("ALTER TABLE T_NEW SWAP WITH T")
    assert token(session) > first and token(session, "T_NEW") > first
    assert token(session, "W") > view
    moved = token(session, "W")
    session.execute("INSERT INTO T VALUES (1, 'a')")
    assert token(session, "W") > moved


def test_names_are_read_as_snowflake_reads_them_in_a_string(session: Any):
    session.execute('CREATE TABLE "Mixed Case" (ID NUMBER)')
    schema = session.connection.schema
    assert token(session, f'{LOAD_DB}.{schema}."Mixed Case"') == token(session, '"Mixed Case"')
    assert token(session, f"{LOAD_DB.lower()}.{schema.lower()}.t") == token(session)
    with pytest.raises(ProgrammingError, match="does not exist or not authorized"):
        token(session, "NO_SUCH_TABLE")


def test_a_dropped_table_has_no_token(session: Any):
    """A table that changed, then was dropped, is an object that does not exist (002003), like one
    never created; created again, it has a new token."""
    session.execute("INSERT INTO T VALUES (1, 'a')")
    before = token(session)
    session.execute("DROP TABLE T")
    with pytest.raises(ProgrammingError, match="does not exist or not authorized") as raised:
        token(session)
    assert raised.value.errno == 2003
    session.execute("CREATE TABLE T (ID NUMBER)")
    assert token(session) > before


def test_last_altered_is_the_start_of_the_last_change(session: Any):
    name = f"A_{uuid.uuid4().hex[:6].upper()}"
    session.execute(f"CREATE TABLE {name} (ID NUMBER)")
    query = f"SELECT LAST_ALTERED FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME = '{name}'"
    session.execute(query)
    created = session.fetchall()[0][0]
    started = dt.datetime.now(dt.UTC)
    session.execute(f"INSERT INTO {name} SELECT 1 WHERE 1 = 0")  # no row: still altered
    session.execute(query)
    altered = session.fetchall()[0][0]
    assert altered > created
    assert started - dt.timedelta(seconds=1) <= altered <= dt.datetime.now(dt.UTC)
