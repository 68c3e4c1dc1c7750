"""Identifier quoting and the read-only statement rule, checked on the exact SQL text."""

from __future__ import annotations

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
