"""The embedded emulator serves what the production path sends and fakesnow lacks, as Snowflake
documents it, to a client that sends exactly what it would send to Snowflake."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import snowflake.connector
from snowflake.connector.errors import ProgrammingError

from data_migration.local import emulator
from data_migration_tests.support import Snowflake, local_folder


def plain_session(port: int) -> snowflake.connector.SnowflakeConnection:
    """A connector session with Snowflake's parameters only: nothing an emulator would need."""
    return snowflake.connector.connect(
        user="svc",
        password="any",
        account="acct",
        host="127.0.0.1",
        port=port,
        protocol="http",
        database=emulator.DATABASE,
        schema=emulator.SCHEMA,
        network_timeout=30,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )


def test_alter_session_set_query_tag_succeeds_as_in_snowflake(fake_snowflake: Snowflake):
    """ALTER SESSION SET QUERY_TAG: 'Statement executed successfully.', and the session's later
    queries run as before (https://docs.snowflake.com/en/sql-reference/sql/alter-session)."""
    with contextlib.closing(plain_session(fake_snowflake.port)) as connection:
        cursor = connection.cursor()
        cursor.execute("""ALTER SESSION SET QUERY_TAG = '{"app":"data-migration","asset":"ORDERS"}'""")
        cursor.execute("alter session  set  query_tag = 'lower case, spaced'")
        cursor.execute("SELECT COUNT(*) FROM NATION")
        assert cursor.fetchall() == [(25,)]
    sent = fake_snowflake.recorder.login_parameters[-1]
    assert "nop_regexes" not in sent and sent["CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED"] is False


@pytest.mark.parametrize(
    "statement", ["ALTER SESSION SET TIMEZONE = 'UTC'", "ALTER SESSION UNSET QUERY_TAG", "SELECT QUERY_TAG"]
)
def test_only_query_tag_is_answered(fake_snowflake: Snowflake, statement: str):
    """Everything else reaches fakesnow unchanged: no statement is silently accepted."""
    with contextlib.closing(plain_session(fake_snowflake.port)) as connection:
        with pytest.raises(ProgrammingError):
            connection.cursor().execute(statement)


def test_the_embedded_default_serves_it_in_process(tmp_path: Path, tpch_dir: Path):
    """The same app is what the embedded default starts (emulator.ensure_started)."""
    port = emulator.ensure_started(local_folder(tmp_path, tpch_dir), "0.01")
    with contextlib.closing(plain_session(port)) as connection:
        cursor = connection.cursor()
        cursor.execute("ALTER SESSION SET QUERY_TAG = 'x'")
        cursor.execute("SELECT COUNT(*) FROM NATION")
        assert cursor.fetchall() == [(25,)]
