"""Identifier quoting and the read-only statement rule, checked on the exact SQL text."""

from __future__ import annotations

import re

import pytest

from data_migration.config.names import (
    SqlError,
    parse_object_name,
    select_all_from,
    string_literal,
    validate_read_only_query,
)


@pytest.mark.parametrize(
    ("written", "sql"),
    [
        ("ORDERS", 'SELECT * FROM "ORDERS"'),
        ("orders", 'SELECT * FROM "ORDERS"'),  # unquoted resolves to upper case, as in Snowflake
        ("order", 'SELECT * FROM "ORDER"'),  # a reserved word is safe once quoted
        ('"lowerCase"', 'SELECT * FROM "lowerCase"'),
        ('DB.SCH."order"', 'SELECT * FROM "DB"."SCH"."order"'),
        ('"my ""quoted"" table"', 'SELECT * FROM "my ""quoted"" table"'),
        ('"a.b"', 'SELECT * FROM "a.b"'),
        ("t$1", 'SELECT * FROM "T$1"'),
    ],
)
def test_table_becomes_one_quoted_identifier(written: str, sql: str):
    assert select_all_from(parse_object_name(written)) == sql


def test_255_character_name_is_the_limit():
    assert parse_object_name("A" * 255)[0].name == "A" * 255
    with pytest.raises(SqlError, match="longer than 255"):
        parse_object_name("A" * 256)


@pytest.mark.parametrize(
    "written",
    [
        "orders; drop table t",
        'orders" ; drop table t --',
        "orders/*",
        "orders\nx",
        "`orders`",
        '"unclosed',
        '""',
        "a..b",
        ".a",
        "a.",
        " a",
        "1abc",
        "a-b",
        "",
        '"a\x01b"',
    ],
)
def test_anything_else_is_rejected(written: str):
    with pytest.raises(SqlError):
        parse_object_name(written)


@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("select 1", "select 1"),
        ("select 1;", "select 1"),
        ("with a as (select 1 x) select * from a", "with a as (select 1 x) select * from a"),
        ("select 1 union all select 2", "select 1 union all select 2"),
        ("select * from t where a = 'x;y'", "select * from t where a = 'x;y'"),
        ("-- note\nselect 1", "-- note\nselect 1"),
    ],
)
def test_read_only_queries_are_sent_as_written(query: str, sent: str):
    assert validate_read_only_query(query) == sent


@pytest.mark.parametrize(
    "query",
    [
        "select 1; drop table t",
        "select 1; select 2",
        "delete from t",
        "update t set a = 1",
        "merge into t using s on t.a = s.a when matched then delete",
        "drop table t",
        "truncate table t",
        "grant select on t to role r",
        "use database x",
        "show tables",
        "copy into @s from t",
    ],
)
def test_writes_and_multiple_statements_are_rejected(query: str):
    with pytest.raises(SqlError):
        validate_read_only_query(query)


@pytest.mark.parametrize(
    ("text", "literal"),
    [("plain", "'plain'"), ("it's", "'it\\'s'"), ("back\\slash", "'back\\\\slash'"), ('{"a":1}', "'{\"a\":1}'")],
)
def test_string_literal_escapes_quote_and_backslash(text: str, literal: str):
    assert string_literal(text) == literal


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # sqlglot's tokenizer raises TokenError, not ParseError, on these: it escaped as a traceback.
        ("SELECT * FROM NATION /* unterminated", "a /* comment is not closed with */"),
        ("SELECT * FROM NATION WHERE N_NAME = 'unterminated", "a ' string is not closed"),
        # A stage is files, not a table: any file the stage reaches, whatever the role may SELECT.
        ("SELECT $1 FROM @STAGE/other/", "reads the stage '@STAGE/other/'"),
        ("SELECT $1 FROM @db.sch.stg (FILE_FORMAT => 'f')", "reads the stage '@db.sch.stg'"),
        ("SELECT $1 FROM '@~/x'", "reads the stage '@~/x'"),
        ("SELECT * FROM NATION JOIN @S ON TRUE", "reads the stage '@S'"),
        ("SELECT * FROM TABLE(INFER_SCHEMA(LOCATION => '@s/x', FILE_FORMAT => 'f'))", "reads the stage '@s/x'"),
        # Control functions act on the account (https://docs.snowflake.com/en/sql-reference/functions-system).
        ("SELECT SYSTEM$CANCEL_ALL_QUERIES(1)", "calls SYSTEM$CANCEL_ALL_QUERIES"),
        ("SELECT N_NAME FROM NATION WHERE SYSTEM$ABORT_SESSION(1) IS NULL", "calls SYSTEM$ABORT_SESSION"),
        ("WITH A AS (SELECT SYSTEM$WAIT(10) AS W) SELECT * FROM A", "calls SYSTEM$WAIT"),
    ],
)
def test_unreadable_text_stage_reads_and_control_functions_are_refused(query: str, expected: str):
    with pytest.raises(SqlError, match=re.escape(expected)):
        validate_read_only_query(query)


def test_an_at_sign_in_a_value_and_the_information_functions_are_allowed():
    query = "SELECT '@home' AS HANDLE, SYSTEM$TYPEOF(N_NAME) AS T FROM NATION WHERE N_COMMENT <> '@x'"
    assert validate_read_only_query(query) == query
