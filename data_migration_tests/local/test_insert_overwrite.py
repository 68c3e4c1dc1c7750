"""INSERT OVERWRITE in the embedded emulator, through the real connector, as
https://docs.snowflake.com/en/sql-reference/sql/insert documents it: OVERWRITE "Specifies that the
target table should be truncated before inserting the values into the table", and "INSERT
statements with OVERWRITE can be processed within the scope of the current transaction". An INSERT
is DML (https://docs.snowflake.com/en/sql-reference/transactions), one statement and so one
transaction: a failing INSERT OVERWRITE changes nothing, and the old rows stay. fakesnow 0.12 runs
it as a DELETE and then an INSERT, which in autocommit mode committed the DELETE on its own, so a
failing INSERT left the table empty; the emulator runs the two in one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from snowflake.connector.errors import ProgrammingError

from data_migration_tests.support import LOAD_DB, Snowflake


@pytest.fixture
def session(fake_snowflake: Snowflake, schema: str) -> Iterator[Any]:
    with contextlib.closing(fake_snowflake.connect(LOAD_DB, schema)) as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE T (ID NUMBER(38,0), V VARCHAR)")
        cursor.execute("INSERT INTO T VALUES (1, 'a'), (2, 'b')")
        cursor.execute("CREATE TABLE SOURCE (ID VARCHAR, V VARCHAR)")
        cursor.execute("INSERT INTO SOURCE VALUES ('3', 'c'), ('not a number', 'd')")
        yield cursor


def rows(cursor: Any) -> list[tuple]:
    cursor.execute("SELECT ID, V FROM T ORDER BY ID")
    return cursor.fetchall()


def test_a_failing_insert_overwrite_leaves_the_old_rows(session: Any, fake_snowflake: Snowflake, schema: str):
    with pytest.raises(ProgrammingError):  # 'not a number' does not cast: the INSERT part fails
        session.execute("INSERT OVERWRITE INTO T (ID, V) SELECT ID::NUMBER(38,0), V FROM SOURCE")
    assert rows(session) == [(1, "a"), (2, "b")]
    # Another session sees them too: nothing of the failed statement was committed.
    assert fake_snowflake.execute("SELECT COUNT(*) FROM T", LOAD_DB, schema) == [(2,)]

    session.execute("INSERT OVERWRITE INTO T (ID, V) SELECT ID::NUMBER(38,0), V FROM SOURCE WHERE ID = '3'")
    assert session.fetchall() == [(1,)]  # number of rows inserted
    assert rows(session) == [(3, "c")]
    assert fake_snowflake.execute("SELECT COUNT(*) FROM T", LOAD_DB, schema) == [(1,)]
    # The session goes on in autocommit mode: a later statement commits on its own.
    session.execute("INSERT INTO T VALUES (4, 'd')")
    assert fake_snowflake.execute("SELECT COUNT(*) FROM T", LOAD_DB, schema) == [(2,)]


def test_an_insert_overwrite_inside_a_transaction_is_rolled_back_with_it(session: Any):
    session.execute("BEGIN TRANSACTION")
    session.execute("INSERT OVERWRITE INTO T (ID, V) SELECT ID::NUMBER(38,0), V FROM SOURCE WHERE ID = '3'")
    assert rows(session) == [(3, "c")]
    session.execute("ROLLBACK")
    assert rows(session) == [(1, "a"), (2, "b")]
    session.execute("BEGIN TRANSACTION")
    session.execute("INSERT OVERWRITE INTO T (ID, V) SELECT ID::NUMBER(38,0), V FROM SOURCE WHERE ID = '3'")
    session.execute("COMMIT")
    assert rows(session) == [(3, "c")]
