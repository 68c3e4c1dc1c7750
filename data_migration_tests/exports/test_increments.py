"""Incremental exports by cursor (config/cursors.py, exports/increments.py): the YAML, cursor values
and their literals, the window a run plans, and end to end against fakesnow's server and moto:
increments that add exactly the new rows, runs with nothing new, faults and reruns, lookback, NULL
cursors, full refreshes, concurrent runs, load_input, and the CLI.

Each end-to-end test creates its own table in the emulator (the Snowflake fixture is shared by
the session), named after the test.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from data_migration.config import ConfigError, parse_exports
from data_migration.config.cursors import (
    CursorError,
    CursorValue,
    CursorWindow,
    IncrementSpec,
    parse_initial,
    parse_lookback,
)
from data_migration.config.names import Identifier
from data_migration.definitions import build_definitions
from data_migration.exports.checks import NULL_CURSOR, READABLE, ROW_COUNT, SCHEMA
from data_migration.exports.increments import Mark, MarkMismatch, max_sql, plan
from data_migration_tests.support import BUCKET, Snowflake, write_config

PATH = "exports/events/data.parquet"
MANIFEST = "exports/events/data/manifest.json"


def cursor(name: str = "UPDATED_AT") -> Identifier:
    return Identifier(name, name)


# The export list ---------------------------------------------------------------------------------


def problems(entry: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_exports({"exports": [entry]}, "exports.yaml")
    return raised.value.problems


def events_entry(**incremental: Any) -> dict[str, Any]:
    return {"table": "EVENTS", "s3_path": PATH, "incremental": {"cursor": "UPDATED_AT", **incremental}}


@pytest.mark.parametrize(
    "entry, expected",
    [
        (
            {**events_entry(), "partition": {"column": "D", "granularity": "daily", "start": "2024-01-01"}},
            "exports[0] (EVENTS).incremental: an export is either partitioned or incremental, not both",
        ),
        (events_entry(cursor="A.B"), "exports[0] (EVENTS).incremental.cursor: 'A.B' must be one column name"),
        (
            events_entry(cursor="X; DROP TABLE T"),
            "exports[0] (EVENTS).incremental.cursor: 'X; DROP TABLE T' is not a Snowflake object name",
        ),
        (
            events_entry(initial="yesterday"),
            "exports[0] (EVENTS).incremental.initial: 'yesterday' is not a lower bound",
        ),
        (events_entry(initial="2024-02-30"), "exports[0] (EVENTS).incremental.initial: '2024-02-30' is not a lower"),
        (events_entry(lookback="an hour"), "exports[0] (EVENTS).incremental.lookback: 'an hour' is not a lookback"),
        (events_entry(lookback=-5), "exports[0] (EVENTS).incremental.lookback: -5 must be zero or more"),
        (
            events_entry(since="x"),
            "exports[0] (EVENTS).incremental.since: unknown field (allowed: cursor, initial, lookback)",
        ),
        (
            {"table": "EVENTS", "s3_path": PATH, "incremental": {}},
            "exports[0] (EVENTS).incremental.cursor: is required",
        ),
        (
            {**events_entry(), "s3_path": "exports/{partition}/x.parquet"},
            "exports[0] (EVENTS).s3_path: 'exports/{partition}/x.parquet' contains {partition}",
        ),
    ],
)
def test_every_incremental_config_error_names_the_field(entry: dict[str, Any], expected: str):
    found = problems(entry)
    assert any(problem.startswith(expected) for problem in found), found


def test_an_incremental_export_is_written_as_parts_and_a_manifest():
    (spec,) = parse_exports(
        {"exports": [events_entry(initial=date(2024, 1, 1), lookback="90 minutes")]}, "e.yaml"
    ).exports
    assert spec.incremental == IncrementSpec(cursor("UPDATED_AT"), "2024-01-01", parse_lookback("90 minutes"))
    assert spec.incremental.lookback.seconds == 5400
    assert spec.split == {"max_rows": None, "max_bytes": None}
    assert spec.output_prefix == "exports/events/data"
    (plain,) = parse_exports({"exports": [{"table": "EVENTS", "s3_path": PATH}]}, "e.yaml").exports
    assert plain.code_version != spec.code_version


# Values, literals, windows -----------------------------------------------------------------------


def test_lookbacks_and_initial_bounds():
    assert parse_lookback("1 hour").seconds == 3600
    assert parse_lookback("2 Days").seconds == 2 * 86400
    assert parse_lookback("1 week").seconds == 7 * 86400
    assert parse_lookback(1000).amount == Decimal(1000)
    assert parse_lookback(0.5).amount == Decimal("0.5")
    assert parse_initial("2024-01-01") == "2024-01-01"
    assert parse_initial(datetime(2024, 1, 1, 6)) == "2024-01-01 06:00:00"
    assert parse_initial(1000) == "1000"
    for bad in (True, "2024-01-01; DROP TABLE X", "1e5", None):
        with pytest.raises(ValueError):
            parse_initial(bad)


@pytest.mark.parametrize(
    "value, kind, text, literal",
    [
        (pa.scalar(42, pa.int64()), "number", "42", "CAST('42' AS NUMBER(38,0))"),
        (pa.scalar(Decimal("-7.50"), pa.decimal128(10, 2)), "number", "-7.50", "CAST('-7.50' AS NUMBER(38,2))"),
        (pa.scalar(date(2024, 2, 29)), "date", "2024-02-29", "TO_DATE('2024-02-29', 'YYYY-MM-DD')"),
        (
            pa.scalar(1_704_067_200_123_456_789, pa.timestamp("ns")),
            "timestamp_ntz",
            "2024-01-01 00:00:00.123456789",
            "TO_TIMESTAMP_NTZ('2024-01-01 00:00:00.123456789', 'YYYY-MM-DD HH24:MI:SS.FF9')",
        ),
        (
            pa.scalar(1_704_067_200, pa.timestamp("s", tz="America/New_York")),
            "timestamp_tz",
            "2024-01-01 00:00:00.000000000",
            "TO_TIMESTAMP_TZ('2024-01-01 00:00:00.000000000 +00:00', 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')",
        ),
        (
            pa.scalar(-1, pa.timestamp("us")),  # before the epoch
            "timestamp_ntz",
            "1969-12-31 23:59:59.999999000",
            "TO_TIMESTAMP_NTZ('1969-12-31 23:59:59.999999000', 'YYYY-MM-DD HH24:MI:SS.FF9')",
        ),
    ],
)
def test_cursor_values_are_exact_and_their_literals_are_typed(value: Any, kind: str, text: str, literal: str):
    parsed = CursorValue.from_arrow(value, "C")
    assert parsed is not None and (parsed.kind, parsed.text(), parsed.literal()) == (kind, text, literal)
    assert CursorValue.parse(kind, text) == parsed  # the manifest's text reads back as the same value
    typed = sqlglot.parse_one(f"SELECT {literal}", read="snowflake").expressions[0]
    written = f"{text} +00:00" if kind == "timestamp_tz" else text
    # A date or timestamp carries its format, so the account's input formats cannot change it.
    expected = {"number": exp.Cast, "date": exp.TsOrDsToDate}.get(kind, exp.StrToTime)
    assert isinstance(typed, expected) and typed.this.this == written
    if kind.startswith("timestamp"):
        target = exp.DataType.Type.TIMESTAMPNTZ if kind == "timestamp_ntz" else exp.DataType.Type.TIMESTAMPTZ
        assert typed.args["target_type"].this == target and typed.args["format"].this


def test_unsupported_cursor_types_and_malformed_marks_are_refused():
    assert CursorValue.from_arrow(pa.scalar(None, pa.int64()), "C") is None
    for scalar in (pa.scalar(1.5), pa.scalar("a"), pa.scalar(True)):
        with pytest.raises(CursorError, match="a cursor must be a NUMBER"):
            CursorValue.from_arrow(scalar, "C")
    for kind, text in (
        ("number", "1; DROP TABLE X"),
        ("number", "1e9"),
        ("date", "2024-01-01' OR '1'='1"),
        ("timestamp_ntz", "2024-01-01 25:00:00"),
        ("float", "1.0"),
    ):
        with pytest.raises(CursorError):
            CursorValue.parse(kind, text)
    with pytest.raises(CursorError):
        Mark.from_manifest({"increment": {"cursor": "C", "kind": "number", "mark": "0) OR (1=1"}})


def ts(text: str) -> CursorValue:
    return CursorValue.parse("timestamp_ntz", text)


def test_the_plan_of_each_kind_of_run():
    spec = IncrementSpec(cursor("UPDATED_AT"))
    hi = ts("2024-01-02 00:00:00")
    first = plan(spec, None, hi, exists=False, full_refresh=False)
    assert first == CursorWindow(hi, None, lower_inclusive=True, fresh=True, reason="first run")
    mark = Mark("UPDATED_AT", ts("2024-01-01 00:00:00"))
    increment = plan(spec, mark, hi, exists=True, full_refresh=False)
    assert increment is not None and not increment.fresh
    assert (increment.lower, increment.lower_inclusive, increment.upper) == (mark.value, False, hi)
    assert plan(spec, mark, mark.value, exists=True, full_refresh=False) is None  # nothing past the mark
    assert plan(spec, mark, ts("2023-01-01 00:00:00"), exists=True, full_refresh=False) is None  # rows deleted
    assert plan(spec, mark, None, exists=True, full_refresh=False) is None  # no row has a cursor
    refresh = plan(spec, mark, hi, exists=True, full_refresh=True)
    assert refresh is not None and refresh.fresh and refresh.lower is None
    # The first run of an empty table commits an empty generation, with no mark yet.
    empty = plan(spec, None, None, exists=False, full_refresh=False)
    assert empty is not None and empty.upper is None and empty.sql("SELECT 1", cursor()).endswith("WHERE 1 = 0")
    # A manifest with no mark, a mark for another cursor or of another type: refused (below).


@pytest.mark.parametrize(
    "committed, expected",
    [
        (Mark("ID", ts("2024-01-01 00:00:00")), "its mark is for cursor ID, but the export's cursor is now UPDATED_AT"),
        (
            Mark("UPDATED_AT", CursorValue.parse("number", "5")),
            "its mark is a NUMBER, but the cursor UPDATED_AT is now a TIMESTAMP_NTZ",
        ),
        (None, "it carries no mark (an export that is not incremental wrote it)"),
    ],
    ids=["cursor renamed", "type changed", "no mark"],
)
def test_a_plan_never_starts_afresh_over_a_manifest_by_itself(committed: Mark | None, expected: str):
    spec = IncrementSpec(cursor("UPDATED_AT"))
    hi = ts("2024-01-02 00:00:00")
    with pytest.raises(MarkMismatch) as raised:
        plan(spec, committed, hi, exists=True, full_refresh=False)
    assert str(raised.value) == expected
    refresh = plan(spec, committed, hi, exists=True, full_refresh=True)  # the one way past it
    assert refresh == CursorWindow(hi, None, lower_inclusive=True, fresh=True, reason="full refresh requested")


def test_a_changed_type_is_named_even_when_initial_does_not_fit_the_new_type():
    spec = IncrementSpec(cursor("UPDATED_AT"), initial="2024-01-01")  # not a NUMBER
    mark, now = Mark("UPDATED_AT", ts("2024-01-01 00:00:00")), CursorValue.parse("number", "5")
    with pytest.raises(MarkMismatch, match="^its mark is a TIMESTAMP_NTZ, but the cursor UPDATED_AT is now a NUMBER$"):
        plan(spec, mark, now, exists=True, full_refresh=False)


def test_lookback_and_initial_bound_the_window():
    hi = ts("2024-01-02 12:00:00")
    mark = Mark("UPDATED_AT", ts("2024-01-02 10:00:00"))
    spec = IncrementSpec(cursor(), initial="2024-01-02", lookback=parse_lookback("1 hour"))
    window = plan(spec, mark, hi, exists=True, full_refresh=False)
    assert window is not None and window.lower == ts("2024-01-02 09:00:00") and not window.lower_inclusive
    spec_late = IncrementSpec(cursor(), initial="2024-01-02 09:30:00", lookback=parse_lookback("1 hour"))
    late = plan(spec_late, mark, hi, exists=True, full_refresh=False)
    assert late is not None and late.lower == ts("2024-01-02 09:30:00") and late.lower_inclusive
    first = plan(spec, None, hi, exists=False, full_refresh=False)
    assert first is not None and first.lower == ts("2024-01-02 00:00:00") and first.lower_inclusive
    days = CursorValue.parse("date", "2024-03-01").minus(parse_lookback("25 hours"))
    assert days.text() == "2024-02-28"  # a DATE cursor reaches back whole days
    with pytest.raises(CursorError, match="is a number, but the cursor is a TIMESTAMP_NTZ"):
        ts("2024-01-01 00:00:00").minus(parse_lookback(5))
    with pytest.raises(CursorError, match="is a duration, but the cursor is a NUMBER"):
        CursorValue.parse("number", "5").minus(parse_lookback("1 hour"))


def test_the_window_sql_parses_with_typed_bounds():
    window = CursorWindow(ts("2024-01-02 00:00:00"), ts("2024-01-01 00:00:00"))
    sql = window.sql('SELECT * FROM "EVENTS"', Identifier('up"dated', 'up"dated'))
    assert sql == (
        'SELECT * FROM (SELECT * FROM "EVENTS") WHERE "up""dated" > '
        "TO_TIMESTAMP_NTZ('2024-01-01 00:00:00.000000000', 'YYYY-MM-DD HH24:MI:SS.FF9') AND \"up\"\"dated\" <= "
        "TO_TIMESTAMP_NTZ('2024-01-02 00:00:00.000000000', 'YYYY-MM-DD HH24:MI:SS.FF9')"
    )
    condition = sqlglot.parse_one(sql, read="snowflake").args["where"].this
    assert isinstance(condition, exp.And)
    assert isinstance(condition.this, exp.GT) and isinstance(condition.expression, exp.LTE)
    for bound in (condition.this.expression, condition.expression.expression):
        assert isinstance(bound, exp.StrToTime) and bound.args["target_type"].this == exp.DataType.Type.TIMESTAMPNTZ
    assert max_sql('SELECT * FROM "EVENTS"', cursor()) == 'SELECT MAX("UPDATED_AT") FROM (SELECT * FROM "EVENTS")'


# End to end: fakesnow's server -> moto -------------------------------------------------------------


class Events:
    """A table of the test's own in the emulator: ID, UPDATED_AT (TIMESTAMP_NTZ), NOTE."""

    def __init__(self, fake: Snowflake, cursor_type: str = "TIMESTAMP_NTZ(9)"):
        self.fake = fake
        self.name = f"EVENTS_{uuid.uuid4().hex[:8].upper()}"
        fake.execute(f"CREATE TABLE {self.name} (ID NUMBER(38,0), UPDATED_AT {cursor_type}, NOTE VARCHAR)")

    def insert(self, rows: list[tuple[int, str | None]]) -> None:
        values = ", ".join(
            f"({row_id}, {'NULL' if when is None else repr(when)}, 'note {row_id}')" for row_id, when in rows
        )
        self.fake.execute(f"INSERT INTO {self.name} VALUES {values}")

    def entry(self, **incremental: Any) -> dict[str, Any]:
        return {
            "table": self.name,
            "s3_path": PATH,
            "file_type": "parquet",
            "incremental": {"cursor": "UPDATED_AT", **incremental},
        }


def day_rows(first_id: int, count: int, day: int, hour: int = 0) -> list[tuple[int, str]]:
    return [(first_id + i, f"2024-01-{day:02d} {hour:02d}:{i % 60:02d}:00") for i in range(count)]


def manifest(s3: Any) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read())


def exported_ids(s3: Any) -> list[int]:
    ids: list[int] = []
    for entry in manifest(s3)["files"]:
        body = s3.get_object(Bucket=BUCKET, Key=f"exports/events/data/{entry['path']}")["Body"].read()
        ids += pq.read_table(io.BytesIO(body)).column("ID").to_pylist()
    return ids


def run(defs: dg.Definitions, instance: dg.DagsterInstance, **config: Any) -> dg.ExecuteInProcessResult:
    (key,) = [k for k in defs.resolve_all_asset_keys() if k.path[0] != "snowflake"]  # not the source table
    run_config = {"ops": {key.to_python_identifier(): {"config": config}}} if config else None
    return defs.resolve_job_def("all_exports").execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config
    )


def materialization(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {name: value.value for name, value in event.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_each_run_exports_exactly_the_new_rows_and_a_run_with_none_commits_nothing(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake)
    events.insert(day_rows(1, 50, day=1))
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    instance = dg.DagsterInstance.ephemeral()

    first = run(defs, instance)
    assert first.success
    md = materialization(first)
    assert (md["dagster/row_count"], md["increment_rows"], md["full_refresh"]) == (50, 50, True)
    assert "retired_files" not in md and "retired_rows" not in md  # a first run retires nothing
    assert (md["increment_lower"], md["increment_upper"]) == ("none", "<= 2024-01-01 00:49:00.000000000")
    assert all(c.passed for c in checks(first).values()), {k: c.description for k, c in checks(first).items()}
    assert manifest(s3)["increment"]["mark"] == "2024-01-01 00:49:00.000000000"

    events.insert(day_rows(51, 30, day=2))
    second = run(defs, instance)
    assert second.success
    md = materialization(second)
    assert (md["dagster/row_count"], md["increment_rows"], md["full_refresh"]) == (80, 30, False)
    assert md["increment_lower"] == "> 2024-01-01 00:49:00.000000000"
    assert md["file_count"] == 2
    found = checks(second)
    assert set(found) == {READABLE, ROW_COUNT, SCHEMA, NULL_CURSOR}
    assert all(c.passed for c in found.values()), {k: c.description for k, c in found.items()}
    assert found[ROW_COUNT].description == "30 rows in this increment, 30 reported by Snowflake"
    ids = exported_ids(s3)
    assert sorted(ids) == list(range(1, 81))  # every row once
    committed = manifest(s3)
    assert committed["row_count"] == 80 and len(committed["files"]) == 2
    assert committed["increment"]["mark"] == "2024-01-02 00:29:00.000000000"
    # The query sent: the export's query restricted to the window, bounds as typed literals.
    sent = [q for q in fake_snowflake.recorder.queries if events.name in q and 'UPDATED_AT" >' in q]
    assert sent[-1] == (
        f'SELECT * FROM (SELECT * FROM "{events.name}") WHERE "UPDATED_AT" > '
        "TO_TIMESTAMP_NTZ('2024-01-01 00:49:00.000000000', 'YYYY-MM-DD HH24:MI:SS.FF9') AND \"UPDATED_AT\" <= "
        "TO_TIMESTAMP_NTZ('2024-01-02 00:29:00.000000000', 'YYYY-MM-DD HH24:MI:SS.FF9')"
    )

    before = s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read()
    third = run(defs, instance)
    assert third.success
    md = materialization(third)
    assert (md["dagster/row_count"], md["increment_rows"], md["increment_committed"]) == (80, 0, False)
    assert s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read() == before  # nothing committed
    assert all(c.passed for c in checks(third).values()), {k: c.description for k, c in checks(third).items()}
    listed = {f"exports/events/data/{e['path']}" for e in committed["files"]} | {MANIFEST}
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/events/")["Contents"]}
    assert stored == listed  # nothing left over, nothing listed missing


def test_a_fault_in_an_increment_leaves_the_manifest_and_mark_and_a_rerun_exports_exactly_the_new_rows(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from data_migration.files import layout

    events = Events(fake_snowflake)
    events.insert(day_rows(1, 40, day=1))
    env = {**production_env, "DATA_MIGRATION_MAX_RETRIES": "0"}
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    before = s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read()

    events.insert(day_rows(41, 25, day=3))
    original = layout._Part.write

    def broken(self: Any, batch: Any, encoded: Any = None) -> None:
        original(self, batch, encoded)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(layout._Part, "write", broken)
    failed = run(defs, instance)
    assert not failed.success
    assert s3.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read() == before  # data and mark unchanged
    assert sorted(exported_ids(s3)) == list(range(1, 41))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/events/")["Contents"]}
    assert len(keys) == 2  # the manifest and the first run's part: nothing half-written is left

    monkeypatch.setattr(layout._Part, "write", original)
    rerun = run(defs, instance)
    assert rerun.success and materialization(rerun)["increment_rows"] == 25
    assert sorted(exported_ids(s3)) == list(range(1, 66))


def test_lookback_re_reads_the_overlap_so_late_rows_are_caught_and_may_repeat(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake)
    events.insert([(1, "2024-01-01 10:00:00"), (2, "2024-01-01 12:00:00")])
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry(lookback="1 hour")]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    # A late commit carries a time before the mark (12:00), within the lookback; and a new row.
    events.insert([(3, "2024-01-01 11:30:00"), (4, "2024-01-01 13:00:00")])
    second = run(defs, instance)
    assert second.success
    md = materialization(second)
    assert md["increment_lower"] == "> 2024-01-01 11:00:00.000000000"
    assert md["increment_rows"] == 3  # row 2 again (it is inside the lookback), the late row 3, and row 4
    assert sorted(exported_ids(s3)) == [1, 2, 2, 3, 4]


def test_rows_with_a_null_cursor_are_counted_by_a_warning(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake)
    events.insert([(1, "2024-01-01 10:00:00"), (2, None), (3, None)])
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    result = run(defs, dg.DagsterInstance.ephemeral())
    assert result.success  # a warning, not a failure
    check = checks(result)[NULL_CURSOR]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["null_rows"].value == 2
    assert "2 row(s) of the query have a NULL UPDATED_AT: they are past no mark" in check.description


def test_a_full_refresh_writes_a_new_generation_and_lists_only_it(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake)
    events.insert(day_rows(1, 10, day=1))
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    events.insert(day_rows(11, 5, day=2))
    assert run(defs, instance).success
    assert len(manifest(s3)["files"]) == 2
    # A row changed behind the cursor's back (no new cursor value): only a full refresh sees it.
    fake_snowflake.execute(f"UPDATE {events.name} SET NOTE = 'changed' WHERE ID = 1")
    refreshed = run(defs, instance, full_refresh=True)
    assert refreshed.success
    md = materialization(refreshed)
    assert (md["dagster/row_count"], md["increment_rows"], md["full_refresh"]) == (15, 15, True)
    assert (md["retired_files"], md["retired_rows"]) == (2, 15)  # the two increments' parts
    committed = manifest(s3)
    assert len(committed["files"]) == 1 and committed["row_count"] == 15
    assert sorted(exported_ids(s3)) == list(range(1, 16))
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/events/")["Contents"]}
    assert stored == {MANIFEST, f"exports/events/data/{committed['files'][0]['path']}"}  # old generations gone
    assert all(c.passed for c in checks(refreshed).values())


def test_of_two_overlapping_runs_one_commits_and_the_other_fails_cleanly(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from data_migration.exports import io_managers
    from data_migration.files import layout

    events = Events(fake_snowflake)
    events.insert(day_rows(1, 10, day=1))
    env = {**production_env, "DATA_MIGRATION_MAX_RETRIES": "0"}
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    events.insert(day_rows(11, 5, day=2))
    read = layout.read_committed

    def another_run_commits_meanwhile(store: Any, key: str) -> Any:
        found = read(store, key)  # this run has read the mark; another run now commits on it
        manifest_then, version = found
        other = layout.Base(version, tuple(manifest_then.content["files"]), {"increment": {"cursor": "UPDATED_AT"}})
        table = pa.table({"ID": pa.array([99], pa.int64())})
        layout.write_export(store, key, io_managers.FORMATS["parquet"], table.schema, table.to_batches(),
                            split=layout.Split(), base=other)  # fmt: skip
        return found

    monkeypatch.setattr(io_managers, "read_committed", another_run_commits_meanwhile)
    result = run(defs, instance)
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "changed by another run since this run began" in message, message
    committed = manifest(s3)
    assert committed["row_count"] == 11  # the other run's commit stands: its 1 row on the first 10
    listed = {f"exports/events/data/{e['path']}" for e in committed["files"]} | {MANIFEST}
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/events/")["Contents"]}
    assert stored == listed  # the failed run's parts are gone


def test_a_downstream_asset_reads_every_part_the_manifest_lists(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake)
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    for day in range(1, 6):  # five increments
        events.insert(day_rows(day * 100, 7, day=day))
        assert run(defs, instance).success
    assert len(manifest(s3)["files"]) == 5
    seen: list[list[int]] = []
    (key,) = [k for k in defs.resolve_all_asset_keys() if k.path[0] != "snowflake"]

    @dg.asset(ins={"events": dg.AssetIn(key)})
    def downstream(events: Any) -> None:
        seen.append(sorted(events["ID"]))

    merged = dg.Definitions.merge(defs, dg.Definitions(assets=[downstream]))
    job = merged.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("downstream")]).success
    assert seen == [sorted(day * 100 + i for day in range(1, 6) for i in range(7))]


@pytest.mark.parametrize(
    "cursor_type, rows, later",
    [
        ("NUMBER(38,0)", [(1, 10), (2, 20)], [(3, 20), (4, 21)]),
        ("DATE", [(1, "2024-01-01"), (2, "2024-01-02")], [(3, "2024-01-03")]),
        ("TIMESTAMP_TZ(9)", [(1, "2024-01-01T10:00:00+02:00")], [(2, "2024-01-01T09:30:00+00:00")]),
    ],
)
def test_number_date_and_zoned_cursors(
    production_env: dict,
    s3: Any,
    fake_snowflake: Snowflake,
    tmp_path: Path,
    cursor_type: str,
    rows: list[tuple[int, Any]],
    later: list[tuple[int, Any]],
):
    events = Events(fake_snowflake, cursor_type)
    fake_snowflake.execute(
        f"INSERT INTO {events.name} (ID, UPDATED_AT) VALUES " + ", ".join(f"({i}, {v!r})" for i, v in rows)
    )
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    fake_snowflake.execute(
        f"INSERT INTO {events.name} (ID, UPDATED_AT) VALUES " + ", ".join(f"({i}, {v!r})" for i, v in later)
    )
    second = run(defs, instance)
    assert second.success, second.get_step_failure_events()
    ids = exported_ids(s3)
    # A later row with the mark's own value (ID 3 at 20) was not past the mark: it waits for a
    # lookback or a full refresh, as the README says. Every other row is there exactly once.
    expected = sorted(i for i, _ in rows + later if not (cursor_type.startswith("NUMBER") and i == 3))
    assert sorted(ids) == expected
    assert all(c.passed for c in checks(second).values())


def test_data_migration_run_shows_each_increment_and_full_refresh_is_an_option(
    production_env: dict,
    s3: Any,
    fake_snowflake: Snowflake,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    from data_migration import cli

    events = Events(fake_snowflake)
    events.insert(day_rows(1, 20, day=1))
    config = write_config(tmp_path / "e.yaml", [events.entry(), {"table": "CUSTOMER", "s3_path": "c.parquet"}])
    monkeypatch.setenv("DATA_MIGRATION_CONFIG", str(config))  # restored after the test; cli sets it too
    monkeypatch.chdir(tmp_path)

    def summary_line(args: list[str]) -> str:
        assert cli.main(["run", "--config", str(config), "--select", events.name, *args]) == 0
        out = capsys.readouterr().out
        live, summary = [" ".join(line.split()) for line in out.splitlines() if line.startswith(f"✓ {events.name} ")]
        lines.append(live)
        return summary

    lines: list[str] = []  # the line each export's end prints while the run goes on
    uri = f"s3://{BUCKET}/{MANIFEST}"
    assert summary_line([]) == f"✓ {events.name} 20 rows +20 new {uri} (first run)"
    events.insert(day_rows(21, 6, day=2))
    assert summary_line([]) == f"✓ {events.name} 26 rows +6 new {uri}"
    assert summary_line([]) == f"✓ {events.name} 26 rows +0 new {uri}"
    assert (
        summary_line(["--full-refresh", events.name])
        == f"✓ {events.name} 26 rows +26 new {uri} (full refresh requested)"
    )
    assert len(manifest(s3)["files"]) == 1
    news = [line.split(" new rows")[0].rsplit(" ", 1)[-1] for line in lines]
    assert news == ["+20", "+6", "+0", "+26"], lines  # the rows each run added, with their bytes

    for args, expected in (
        (["--full-refresh", "CUSTOMER"], "error: --full-refresh CUSTOMER: not an incremental export"),
        (["--full-refresh", "NOPE"], "error: --full-refresh NOPE: is not an export"),
        (["--select", "CUSTOMER", "--full-refresh", events.name], f"--full-refresh {events.name}: is not selected"),
    ):
        assert cli.main(["run", "--config", str(config), *args]) == 2
        assert expected in capsys.readouterr().err


def test_on_the_embedded_default_with_both_clis(tmp_path: Path, tpch_dir: Path):
    """The local folder's store, `data-migration run` twice, then a full refresh through
    `dagster asset materialize --config-json`, as the README shows it."""
    import subprocess
    import sys

    from data_migration_tests.support import environment_without_settings, local_folder

    bin_dir = Path(sys.executable).parent
    local = local_folder(tmp_path, tpch_dir)
    entry = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet", "incremental": {"cursor": "O_ORDERKEY"}}
    config = write_config(tmp_path / "e.yaml", [entry])
    env = environment_without_settings(
        DATA_MIGRATION_LOCAL_DIR=str(local), DATA_MIGRATION_CONFIG=str(config), DAGSTER_HOME=str(tmp_path)
    )

    def command(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    folder = local / "bucket" / "exports" / "orders" / "data"
    first = command(str(bin_dir / "data-migration"), "run")
    assert " 15,000 rows  +15,000 new  file://" in first.stdout
    second = command(str(bin_dir / "data-migration"), "run")
    assert " 15,000 rows  +0 new  file://" in second.stdout
    assert "Checks: 4 of 4 passed." in second.stdout
    first_generation = json.loads((folder / "manifest.json").read_text())["generation"]
    refresh = '{"ops": {"ORDERS": {"config": {"full_refresh": true}}}}'
    done = command(str(bin_dir / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "ORDERS",
                   "--config-json", refresh)  # fmt: skip
    assert "full refresh requested" in done.stderr
    committed = json.loads((folder / "manifest.json").read_text())
    assert committed["generation"] != first_generation and committed["row_count"] == 15000
    assert len(committed["files"]) == 1
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))  # not the store's lock file
    assert visible == sorted(["manifest.json", committed["generation"]])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda content: b"{not json",
        lambda content: json.dumps(
            {**content, "increment": {**content["increment"], "mark": "2024-01-01' OR '1'='1"}}
        ).encode(),
    ],
    ids=["unreadable", "mark with SQL"],
)
def test_a_manifest_that_cannot_be_built_on_fails_the_run_until_a_full_refresh(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, tamper: Any
):
    events = Events(fake_snowflake)
    events.insert(day_rows(1, 5, day=1))
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    s3.put_object(Bucket=BUCKET, Key=MANIFEST, Body=tamper(manifest(s3)))
    sent = len(fake_snowflake.recorder.queries)
    failed = run(defs, instance)
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert "cannot be built on" in message and f"--full-refresh {events.name}" in message
    assert not any("OR '1'='1" in q for q in fake_snowflake.recorder.queries[sent:])  # it never reached SQL
    refreshed = run(defs, instance, full_refresh=True)
    assert refreshed.success
    assert sorted(exported_ids(s3)) == [1, 2, 3, 4, 5]
    assert manifest(s3)["increment"]["mark"] == "2024-01-01 00:04:00.000000000"


# A run never starts afresh over a manifest by itself: that would remove every earlier part --------


def bucket_objects(s3: Any) -> dict[str, bytes]:
    """Every object in the bucket, byte for byte."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def assert_refused(message: str, events: Events, *changed: str) -> None:
    """The refusal names what changed, the manifest, and the command that starts the export again."""
    expected = (*changed, f"s3://{BUCKET}/{MANIFEST}", f"data-migration run --full-refresh {events.name}")
    for text in (*expected, "nothing was written or removed", "not retried"):
        assert text in message, message


def assert_only_the_bound_was_queried(fake: Snowflake, sent: int, events: Events) -> None:
    queries = [q for q in fake.recorder.queries[sent:] if events.name in q and not q.startswith("ALTER SESSION")]
    assert queries and all(q.startswith("SELECT MAX(") for q in queries), queries  # no row was read


def assert_a_full_refresh_retires(
    defs: dg.Definitions, instance: dg.DagsterInstance, s3: Any, previous: dict[str, Any]
) -> dict[str, Any]:
    """A full refresh succeeds, says what of the previous manifest it retired, and leaves only its own files."""
    refreshed = run(defs, instance, full_refresh=True)
    assert refreshed.success, refreshed.get_step_failure_events()
    md = materialization(refreshed)
    files, rows = len(previous["files"]), previous["row_count"]
    assert (md["retired_files"], md["retired_rows"], md["full_refresh"]) == (files, rows, True)
    logs = [entry.user_message for entry in instance.all_logs(refreshed.run_id)]
    line = f"Full refresh: retiring {files} file(s), {rows} rows of the previous manifest s3://{BUCKET}/{MANIFEST}"
    assert line in logs, logs
    committed = manifest(s3)
    assert set(bucket_objects(s3)) == {MANIFEST, *(f"exports/events/data/{e['path']}" for e in committed["files"])}
    return md


def test_a_renamed_cursor_fails_the_run_and_keeps_every_earlier_part(
    production_env: dict,
    s3: Any,
    fake_snowflake: Snowflake,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    from data_migration import cli

    events = Events(fake_snowflake)
    events.insert(day_rows(1, 10, day=1))
    config = write_config(tmp_path / "e.yaml", [events.entry()])
    instance = dg.DagsterInstance.ephemeral()
    assert run(build_definitions(config, production_env), instance).success
    events.insert(day_rows(11, 5, day=2))
    assert run(build_definitions(config, production_env), instance).success
    before, previous = bucket_objects(s3), manifest(s3)
    assert len(previous["files"]) == 2
    # The same values under another name, through an alias in the query (issue 31, item 3).
    query = f"SELECT ID, UPDATED_AT AS CHANGED_AT, NOTE FROM {events.name}"
    write_config(config, [{**events.entry(cursor="CHANGED_AT"), "query": query}])
    monkeypatch.setenv("DATA_MIGRATION_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    sent = len(fake_snowflake.recorder.queries)
    assert cli.main(["run", "--config", str(config)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert_refused(out, events, "its mark is for cursor UPDATED_AT, but the export's cursor is now CHANGED_AT")
    assert_only_the_bound_was_queried(fake_snowflake, sent, events)
    assert bucket_objects(s3) == before
    md = assert_a_full_refresh_retires(build_definitions(config, production_env), instance, s3, previous)
    assert md["dagster/row_count"] == 15 and manifest(s3)["increment"]["cursor"] == "CHANGED_AT"


def test_a_cursor_of_another_type_fails_the_run_and_keeps_every_earlier_part(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake, "NUMBER(38,0)")
    fake_snowflake.execute(f"INSERT INTO {events.name} (ID, UPDATED_AT) VALUES (1, 10), (2, 20), (3, 30)")
    defs = build_definitions(write_config(tmp_path / "e.yaml", [events.entry()]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    before, previous = bucket_objects(s3), manifest(s3)
    # The column keeps its name and becomes a timestamp.
    fake_snowflake.execute(f"DROP TABLE {events.name}")
    fake_snowflake.execute(f"CREATE TABLE {events.name} (ID NUMBER(38,0), UPDATED_AT TIMESTAMP_NTZ(9), NOTE VARCHAR)")
    events.insert(day_rows(1, 4, day=1))
    sent = len(fake_snowflake.recorder.queries)
    failed = run(defs, instance)
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert_refused(message, events, "its mark is a NUMBER, but the cursor UPDATED_AT is now a TIMESTAMP_NTZ")
    assert_only_the_bound_was_queried(fake_snowflake, sent, events)
    assert bucket_objects(s3) == before
    md = assert_a_full_refresh_retires(defs, instance, s3, previous)
    assert md["dagster/row_count"] == 4 and manifest(s3)["increment"]["kind"] == "timestamp_ntz"


def test_a_manifest_without_a_mark_fails_the_run_and_keeps_every_part(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    events = Events(fake_snowflake)
    events.insert(day_rows(1, 7, day=1))
    plain = {"table": events.name, "s3_path": PATH, "file_type": "parquet", "max_rows_per_file": 3}
    config = write_config(tmp_path / "e.yaml", [plain])
    instance = dg.DagsterInstance.ephemeral()
    assert run(build_definitions(config, production_env), instance).success
    before, previous = bucket_objects(s3), manifest(s3)
    assert "increment" not in previous and len(previous["files"]) == 3
    # The same s3_path, now incremental.
    defs = build_definitions(write_config(config, [{**events.entry(), "max_rows_per_file": 3}]), production_env)
    sent = len(fake_snowflake.recorder.queries)
    failed = run(defs, instance)
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert_refused(message, events, "it carries no mark (an export that is not incremental wrote it)")
    assert_only_the_bound_was_queried(fake_snowflake, sent, events)
    assert bucket_objects(s3) == before
    md = assert_a_full_refresh_retires(defs, instance, s3, previous)
    assert md["dagster/row_count"] == 7 and manifest(s3)["increment"]["mark"] == "2024-01-01 00:06:00.000000000"


def test_increments_cut_into_parts_in_gzipped_csv_with_a_full_read_back(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    import csv
    import gzip

    events = Events(fake_snowflake)
    events.insert(day_rows(1, 7, day=1))
    entry = {
        **events.entry(),
        "s3_path": "exports/events/data.csv.gz",
        "file_type": "csv",
        "compression": "gzip",
        "max_rows_per_file": 3,
        "verify": "full",
    }
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run(defs, instance).success
    events.insert(day_rows(8, 4, day=2))
    second = run(defs, instance)
    assert second.success
    found = checks(second)
    assert all(c.passed for c in found.values()), {k: c.description for k, c in found.items()}
    assert found[READABLE].metadata["verification"].value == "full read-back"
    assert found[ROW_COUNT].description == "4 rows in this increment, 4 reported by Snowflake"
    committed = manifest(s3)
    assert [f["rows"] for f in committed["files"]] == [3, 3, 1, 3, 1]  # each run cut at 3 rows
    ids = []
    for part in committed["files"]:
        assert part["path"].endswith(".csv.gz")
        body = s3.get_object(Bucket=BUCKET, Key=f"exports/events/data/{part['path']}")["Body"].read()
        ids += [int(row["ID"]) for row in csv.DictReader(io.StringIO(gzip.decompress(body).decode()))]
    assert sorted(ids) == list(range(1, 12))
