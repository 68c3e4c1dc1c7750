"""Issue 21, bug 1: a user's query that ends in a comment, a semicolon or blank lines is sent
inside every wrapper the project puts around it (a partition's window, an increment's window and
its MAX, the NULL counts, the row counts, an unload's COPY and its describe) without changing the
statement. Before the fix, `-- …` swallowed the `) WHERE …` a wrapper appends, in the emulator as
in Snowflake (https://docs.snowflake.com/en/sql-reference/sql-format-comments: `--` and `//`
comment to the end of the line)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from data_migration.config import parse_exports
from data_migration.config.cursors import CursorValue, CursorWindow
from data_migration.config.names import Identifier, null_count_sql, validate_read_only_query
from data_migration.config.windows import Window
from data_migration.config.windows import window_sql as partition_sql
from data_migration.exports.increments import max_sql
from data_migration.exports.unload import shaped_query, unload_sql
from data_migration.snowflake.queries import Column
from data_migration_tests.support import environment_without_settings, local_folder, write_config

ENDINGS = {
    "line": " -- every order",
    "slashes": " // every order",
    "block": " /* every order */",
    "semicolon": ";",
    "blank": "\n\n   \n",
    "all": "; -- every order\n/* and */ ;\n",
}
QUERY = "SELECT * FROM ORDERS WHERE O_ORDERKEY < 20000"


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_the_query_is_sent_without_what_follows_its_last_token(ending: str):
    assert validate_read_only_query(f"-- orders\n{QUERY}{ending}") == f"-- orders\n{QUERY}"


def _entries(ending: str, name: str) -> list[dict]:
    query = QUERY + ending
    lower = name.lower()
    return [
        {"table": f"{name}_STREAM", "s3_path": f"exports/{lower}/stream.parquet", "query": query},
        {
            "table": f"{name}_MONTHLY",
            "s3_path": f"exports/{lower}/month={{partition}}/data.parquet",
            "query": query,
            "partition": {"column": "O_ORDERDATE", "granularity": "monthly", "start": "1990-01-01"},
        },
        {
            "table": f"{name}_INCREMENT",
            "s3_path": f"exports/{lower}/increment.parquet",
            "query": query,
            "incremental": {"cursor": "O_ORDERKEY"},
        },
        {"table": f"{name}_UNLOAD", "s3_path": f"exports/{lower}/unload.parquet", "query": query, "method": "unload"},
    ]


def test_every_wrapper_runs_a_query_that_ends_in_a_comment_a_semicolon_or_blank_lines(tmp_path: Path, tpch_dir: Path):
    """One `data-migration run` on the embedded default: each export kind with each ending."""
    entries = [entry for label, ending in ENDINGS.items() for entry in _entries(ending, label.upper())]
    config = write_config(tmp_path / "e.yaml", entries)
    local = local_folder(tmp_path, tpch_dir)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "data-migration"), "run", "--config", str(config)],
        env=environment_without_settings(DATA_MIGRATION_LOCAL_DIR=str(local), DAGSTER_HOME=str(tmp_path)),
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert f"{len(entries)} of {len(entries)} exports succeeded" in done.stdout
    assert "failed" not in done.stdout.split("Checks:")[1].splitlines()[0]
    bucket = local / "bucket" / "exports"
    counts = set()
    for label in ENDINGS:
        folder = bucket / label.lower()
        counts.add(pq.read_metadata(folder / "stream.parquet").num_rows)
        for kind in ("unload", "increment"):
            counts.add(json.loads((folder / kind / "manifest.json").read_text())["row_count"])
    assert len(counts) == 1 and counts.pop() > 4000  # every export read the same rows


def test_each_wrapper_parses_as_one_statement_around_the_users_query():
    """The text of each wrapper, parsed with sqlglot's Snowflake dialect: the user's query is the
    subquery, whole, and the wrapper's own condition is still there."""
    for ending in ENDINGS.values():
        config = parse_exports({"exports": [{"table": "T", "s3_path": "t.parquet", "query": QUERY + ending}]}, "e.yaml")
        query = config.exports[0].query
        column = Identifier("O_ORDERKEY", "O_ORDERKEY")
        january = Window("2024-01-01", dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1))
        texts = {
            "NULL count": null_count_sql(query, column),
            "partition window": partition_sql(query, column, january),
            "increment MAX": max_sql(query, column),
            "increment window": CursorWindow(upper=CursorValue.parse("number", "5")).sql(query, column),
            "unload": unload_sql("DATA_MIGRATION_EXPORTS", "exports/t", query, [], None, "snappy"),
            "unload, zoned": shaped_query(query, [Column("TS", "TIMESTAMP_TZ(9)")]),
        }
        for what, text in texts.items():
            tree = sqlglot.parse_one(text, read="snowflake")
            inner = tree.find(exp.Subquery) if what != "unload" else tree.find(exp.Copy).args["files"][0]
            assert inner is not None and inner.this == sqlglot.parse_one(QUERY, read="snowflake"), (what, text)
            if not what.startswith("unload"):
                assert tree.find(exp.Where if what != "increment MAX" else exp.Max) is not None, (what, text)
