"""Time-partitioned exports (config/windows.py, exports/): the YAML, the window SQL, one object per
partition committed on its own in a single-run range, reruns, failures mid-range, empty partitions,
the checks per partition, the schedule's partitions, load_input, and the commands users run.

End to end against fakesnow's server and moto (production_env) and on the embedded default. The
emulator's TPC-H dates are shifted so that the newest O_ORDERDATE is today, so the months used
here are counted back from today.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
import snowflake.connector
import sqlglot
from sqlglot import exp

from data_migration.config import ConfigError, parse_exports
from data_migration.config.names import Identifier
from data_migration.config.windows import Window, window_sql
from data_migration.definitions import build_definitions
from data_migration.exports.checks import NULL_PARTITION, READABLE, ROW_COUNT, SCHEMA
from data_migration.local import emulator
from data_migration.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, partition_job_name
from data_migration_tests.support import BUCKET, Snowflake, environment_without_settings, local_folder, write_config

BIN = Path(sys.executable).parent
TEMPLATE = "exports/orders/month={partition}/data.parquet"


def month_start(months_ago: int) -> dt.date:
    today = dt.date.today()
    index = today.year * 12 + today.month - 1 - months_ago
    return dt.date(index // 12, index % 12 + 1, 1)


def months(first_ago: int, count: int) -> list[str]:
    return [month_start(first_ago - i).isoformat() for i in range(count)]


def orders_entry(**extra: Any) -> dict[str, Any]:
    return {
        "table": "ORDERS",
        "s3_path": TEMPLATE,
        "partition": {"column": "O_ORDERDATE", "granularity": "monthly", "start": "1990-01-01"},
        **extra,
    }


def run_range(defs: dg.Definitions, start: str, end: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("ORDERS_partitions")
    return job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={PARTITION_RANGE_START_TAG: start, PARTITION_RANGE_END_TAG: end},
    )


def s3_bytes(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def snowflake_count(fake: Snowflake, sql: str) -> int:
    with snowflake.connector.connect(
        account="fakesnow", user="t", password="t", host=fake.host, port=fake.port, protocol="http",
        database=emulator.DATABASE, schema=emulator.SCHEMA,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    ) as conn:  # fmt: skip
        return conn.cursor().execute(sql).fetchone()[0]


# The export list ---------------------------------------------------------------------------------


def problems(entry: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_exports({"exports": [entry]}, "exports.yaml")
    return raised.value.problems


@pytest.mark.parametrize(
    "entry, expected",
    [
        (
            {"table": "ORDERS", "s3_path": TEMPLATE},
            "exports[0] (ORDERS).s3_path: 'exports/orders/month={partition}/data.parquet' contains {partition} "
            "but the export has no `partition:`",
        ),
        (
            orders_entry(s3_path="exports/orders/data.parquet"),
            "exports[0] (ORDERS).s3_path: a partitioned export's s3_path must contain {partition}",
        ),
        (
            orders_entry(partition={"column": "O_ORDERDATE", "granularity": "yearly", "start": "1992-01-01"}),
            "exports[0] (ORDERS).partition.granularity: 'yearly' is not one of hourly, daily, weekly, monthly",
        ),
        (
            orders_entry(partition={"column": "O_ORDERDATE", "granularity": "daily", "start": "1992-13-01"}),
            "exports[0] (ORDERS).partition.start: '1992-13-01' is not a date of the form YYYY-MM-DD",
        ),
        (
            orders_entry(partition={"column": "O_ORDERDATE", "granularity": "daily", "start": 1992}),
            "exports[0] (ORDERS).partition.start: 1992 is not a date",
        ),
        (
            orders_entry(
                partition={"column": "O_ORDERDATE", "granularity": "daily", "start": "1992-01-01", "end": "soon"}
            ),
            "exports[0] (ORDERS).partition.end: 'soon' is not a date of the form YYYY-MM-DD",
        ),
        (
            orders_entry(
                partition={"column": "O_ORDERDATE", "granularity": "daily", "start": "1992-01-01", "end": "1991-01-01"}
            ),
            "exports[0] (ORDERS).partition.end: '1991-01-01' is not after start '1992-01-01'",
        ),
        (
            orders_entry(
                partition={"column": "O_ORDERDATE", "granularity": "daily", "start": "1992-01-01", "lookback": -1}
            ),
            "exports[0] (ORDERS).partition.lookback: input should be greater than or equal to 0",
        ),
        (
            orders_entry(
                partition={"column": "O_ORDERDATE; DROP TABLE X", "granularity": "daily", "start": "1992-01-01"}
            ),
            "exports[0] (ORDERS).partition.column: 'O_ORDERDATE; DROP TABLE X' is not a Snowflake object name",
        ),
        (
            orders_entry(partition={"column": "ORDERS.O_ORDERDATE", "granularity": "daily", "start": "1992-01-01"}),
            "exports[0] (ORDERS).partition.column: 'ORDERS.O_ORDERDATE' must be one column name of the result",
        ),
        (
            orders_entry(partition={"column": "O_ORDERDATE", "granularity": "daily", "start": "1992-01-01", "at": 1}),
            "exports[0] (ORDERS).partition.at: unknown field (allowed: column, granularity, start, end, lookback)",
        ),
        (
            orders_entry(partition={"granularity": "daily", "start": "1992-01-01"}),
            "exports[0] (ORDERS).partition.column: is required",
        ),
    ],
)
def test_every_partition_config_error_names_the_field(entry: dict[str, Any], expected: str):
    found = problems(entry)
    assert any(problem.startswith(expected) for problem in found), found


def test_dates_are_taken_quoted_or_not_and_hourly_takes_an_hour():
    unquoted = parse_exports({"exports": [orders_entry(partition={
        "column": "o_orderdate", "granularity": "monthly", "start": dt.date(1992, 1, 1), "lookback": 2,
    })]}, "e.yaml").exports[0].partition  # fmt: skip
    assert unquoted is not None
    assert (unquoted.start, unquoted.column.name, unquoted.lookback) == (dt.datetime(1992, 1, 1), "O_ORDERDATE", 2)
    hourly = parse_exports({"exports": [orders_entry(partition={
        "column": "O_ORDERDATE", "granularity": "hourly", "start": "2024-03-10 06:00",
    })]}, "e.yaml").exports[0].partition  # fmt: skip
    assert hourly is not None and hourly.start == dt.datetime(2024, 3, 10, 6)
    assert hourly.definition().get_first_partition_key() == "2024-03-10-06:00"


def test_window_sql_is_the_query_restricted_half_open_with_typed_literals():
    window = Window("1995-03-01", dt.datetime(1995, 3, 1), dt.datetime(1995, 4, 1))
    sql = window_sql('SELECT * FROM "ORDERS"', Identifier("o_orderDate", "o_orderDate"), window)
    assert sql == (
        'SELECT * FROM (SELECT * FROM "ORDERS") WHERE "o_orderDate" >= '
        "TO_TIMESTAMP_NTZ('1995-03-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS') "
        "AND \"o_orderDate\" < TO_TIMESTAMP_NTZ('1995-04-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS')"
    )
    tree = sqlglot.parse_one(sql, read="snowflake")
    condition = tree.args["where"].this
    assert isinstance(condition, exp.And)
    low, high = condition.this, condition.expression
    assert isinstance(low, exp.GTE) and isinstance(high, exp.LT)
    for bound in (low.expression, high.expression):  # with its format: no account setting changes it
        assert isinstance(bound, exp.StrToTime) and bound.args["target_type"].this == exp.DataType.Type.TIMESTAMPNTZ


# End to end: fakesnow's server -> moto -------------------------------------------------------------


def test_a_range_writes_one_object_per_partition_each_with_its_windows_rows(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path
):
    defs = build_definitions(write_config(tmp_path / "e.yaml", [orders_entry()]), production_env)
    keys = months(24, 3)
    instance = dg.DagsterInstance.ephemeral()
    logins = fake_snowflake.recorder.logins
    result = run_range(defs, keys[0], keys[-1], instance)
    assert result.success
    # One sign-in for the three partitions' queries, one for the NULL count of the checks.
    assert fake_snowflake.recorder.logins - logins == 2
    events = {e.partition: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert list(events) == keys
    for key in keys:
        start = dt.date.fromisoformat(key)
        end = month_start(24 - keys.index(key) - 1)
        expected = snowflake_count(
            fake_snowflake,
            f"SELECT COUNT(*) FROM ORDERS WHERE O_ORDERDATE >= '{start}' AND O_ORDERDATE < '{end}'",
        )
        body = s3_bytes(s3, TEMPLATE.replace("{partition}", key))
        table = pq.read_table(io.BytesIO(body))
        assert table.num_rows == expected == events[key]["dagster/row_count"].value > 0
        assert all(start <= d < end for d in table.column("O_ORDERDATE").to_pylist())
        assert events[key]["partition_window"].value == f"[{start} 00:00, {end} 00:00) UTC"
        assert 'WHERE "O_ORDERDATE" >= TO_TIMESTAMP_NTZ(\'' in events[key]["query"].value
    found = {(c.check_name): c for c in result.get_asset_check_evaluations()}
    assert set(found) == {READABLE, ROW_COUNT, SCHEMA, NULL_PARTITION}
    assert all(c.passed for c in found.values()), {k: c.description for k, c in found.items()}
    assert found[READABLE].metadata["partitions"].value == 3
    # Each partition's query ran on its own, restricted to its window.
    sent = [sql for sql in fake_snowflake.recorder.queries if "FROM (SELECT * FROM" in sql]
    assert len([sql for sql in sent if 'O_ORDERDATE" >= ' in sql]) >= 3


def test_a_rerun_rewrites_the_same_bytes(production_env: dict, s3: Any, tmp_path: Path):
    defs = build_definitions(write_config(tmp_path / "e.yaml", [orders_entry()]), production_env)
    keys = months(30, 2)
    instance = dg.DagsterInstance.ephemeral()
    assert run_range(defs, keys[0], keys[-1], instance).success
    first = {k: s3_bytes(s3, TEMPLATE.replace("{partition}", k)) for k in keys}
    assert run_range(defs, keys[0], keys[-1], instance).success
    again = {k: s3_bytes(s3, TEMPLATE.replace("{partition}", k)) for k in keys}
    assert first == again


def test_a_failure_in_the_third_partition_leaves_the_first_two_committed(
    production_env: dict, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from data_migration.files import layout

    no_retries = {**production_env, "DATA_MIGRATION_MAX_RETRIES": "0"}  # the failure is transient
    defs = build_definitions(write_config(tmp_path / "e.yaml", [orders_entry()]), no_retries)
    keys = months(20, 3)
    original = layout.write_export

    def fails_on_the_third(store: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if keys[2] in key:
            batches = args[2]
            next(iter(batches))  # mid-stream, as a dropped connection would
            raise ConnectionResetError("connection reset by peer")
        return original(store, key, *args, **kwargs)

    monkeypatch.setattr("data_migration.exports.io_managers.write_export", fails_on_the_third)
    instance = dg.DagsterInstance.ephemeral()
    result = run_range(defs, keys[0], keys[-1], instance)
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.message
    assert f"ORDERS partition {keys[2]}" in message
    stored = {k: TEMPLATE.replace("{partition}", k) for k in keys}
    kept = {k: s3_bytes(s3, stored[k]) for k in keys[:2]}
    assert all(pq.read_table(io.BytesIO(body)).num_rows > 0 for body in kept.values())
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"exports/orders/month={keys[2]}").get("KeyCount") == 0

    monkeypatch.setattr("data_migration.exports.io_managers.write_export", original)
    assert run_range(defs, keys[0], keys[-1], instance).success  # the rerun completes the range ...
    assert {k: s3_bytes(s3, stored[k]) for k in keys[:2]} == kept  # ... same bytes


def test_an_empty_partition_writes_a_valid_empty_file(production_env: dict, s3: Any, tmp_path: Path):
    entry = orders_entry(s3_path="exports/orders/{partition}.csv", file_type="csv")
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), production_env)
    empty = "1991-01-01"  # decades before the shifted TPC-H data
    result = run_range(defs, empty, empty, dg.DagsterInstance.ephemeral())
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.partition == empty and event.materialization.metadata["dagster/row_count"].value == 0
    body = s3_bytes(s3, f"exports/orders/{empty}.csv").decode()
    assert body.startswith('"O_ORDERKEY","O_CUSTKEY"') and body.count("\n") == 1  # the header alone
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_rows_with_a_null_partition_column_are_counted_by_a_warning(
    production_env: dict, s3: Any, tmp_path: Path, fake_snowflake: Snowflake
):
    entry = orders_entry(
        query="SELECT O_ORDERKEY, IFF(O_ORDERKEY % 100 = 0, NULL, O_ORDERDATE) AS O_ORDERDATE FROM ORDERS",
    )
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), production_env)
    key = months(12, 1)[0]
    result = run_range(defs, key, key, dg.DagsterInstance.ephemeral())
    assert result.success  # a warning, not a failure
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == NULL_PARTITION]
    expected = snowflake_count(fake_snowflake, "SELECT COUNT(*) FROM ORDERS WHERE O_ORDERKEY % 100 = 0")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["null_rows"].value == expected > 0


def test_a_downstream_asset_reads_the_partitions_it_asks_for(production_env: dict, s3: Any, tmp_path: Path):
    defs = build_definitions(write_config(tmp_path / "e.yaml", [orders_entry()]), production_env)
    keys = months(40, 2)
    instance = dg.DagsterInstance.ephemeral()
    assert run_range(defs, keys[0], keys[-1], instance).success
    seen: list[int] = []

    @dg.asset(
        partitions_def=defs.get_assets_def("ORDERS").partitions_def,
        ins={"orders": dg.AssetIn(dg.AssetKey("ORDERS"))},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def monthly_revenue(orders: Any) -> None:
        seen.append(len(orders))

    downstream = dg.Definitions(assets=[monthly_revenue], resources=defs.resources)
    job = dg.Definitions.merge(defs, downstream).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("monthly_revenue")],
        tags={PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]},
        raise_on_error=False,
    )
    assert result.success
    totals = [
        e.materialization.metadata["dagster/row_count"].value
        for e in run_range(defs, keys[0], keys[-1], instance).get_asset_materialization_events()
    ]
    assert seen == [sum(totals)]


def test_the_schedule_asks_for_the_latest_complete_partition_and_its_lookback(production_env: dict, tmp_path: Path):
    entries = [
        orders_entry(schedule="0 6 * * *"),
        {
            "table": "LINEITEM",
            "s3_path": "exports/lineitem/{partition}.parquet",
            "schedule": "0 6 * * *",
            "partition": {"column": "L_SHIPDATE", "granularity": "daily", "start": "2024-01-01", "lookback": 2},
        },
        {"table": "REGION", "s3_path": "exports/region.parquet", "schedule": "0 6 * * *"},
    ]
    defs = build_definitions(write_config(tmp_path / "e.yaml", entries), production_env)
    at = dt.datetime(2026, 3, 10, 6, 0, tzinfo=dt.UTC)
    repository = defs.get_repository_def()

    def requests(name: str) -> list[dg.RunRequest]:
        schedule = defs.resolve_schedule_def(name)
        # Entered and left: the context enters an instance of its own, which sets Dagster's
        # process-wide current state storage until it is left.
        with dg.build_schedule_context(scheduled_execution_time=at, repository_def=repository) as context:
            return list(schedule.evaluate_tick(context).run_requests or [])

    (monthly,) = requests("ORDERS_partitions_schedule")
    assert monthly.partition_key == "2026-02-01"  # March is not complete on the 10th
    (daily,) = requests("LINEITEM_partitions_schedule")
    assert (daily.tags[PARTITION_RANGE_START_TAG], daily.tags[PARTITION_RANGE_END_TAG]) == ("2026-03-07", "2026-03-09")
    (plain,) = requests("exports_0_6_x_x_x_schedule")
    assert plain.partition_key is None
    assert defs.resolve_job_def("exports_0_6_x_x_x_job").asset_layer.executable_asset_keys == {dg.AssetKey("REGION")}
    assert partition_job_name(parse_exports({"exports": [entries[0]]}, "e.yaml").exports[0]) == "ORDERS_partitions"


# The commands users run, on the embedded default ---------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path, tpch_dir: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = write_config(
        tmp_path / "exports.yaml",
        [orders_entry(), {"table": "REGION", "s3_path": "exports/region.csv", "file_type": "csv"}],
    )
    return environment_without_settings(
        DAGSTER_HOME=str(home),
        DATA_MIGRATION_LOCAL_DIR=str(local_folder(tmp_path, tpch_dir)),
        DATA_MIGRATION_CONFIG=str(config),
    )


def command(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """One of the project's commands (data-migration, dagster) in a subprocess."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_dagster_asset_materialize_with_a_partition_range(embedded: dict[str, str], tmp_path: Path):
    keys = months(26, 3)
    done = command(
        embedded, tmp_path, "dagster", "asset", "materialize", "-m", "data_migration", "--select", "ORDERS",
        "--partition-range", f"{keys[0]}...{keys[-1]}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    bucket = Path(embedded["DATA_MIGRATION_LOCAL_DIR"]) / "bucket"
    written = sorted(p.parent.name for p in bucket.glob("exports/orders/month=*/data.parquet"))
    assert written == [f"month={k}" for k in keys]
    assert "RUN_SUCCESS" in done.stderr


def test_a_mixed_list_from_the_cli(embedded: dict[str, str], tmp_path: Path):
    """`data-migration run`: the unpartitioned exports whole, a partitioned one's latest complete
    partition; `dagster asset materialize --select "*"` needs a partition and then runs both."""
    done = command(embedded, tmp_path, "data-migration", "run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr == ""
    latest = month_start(1).isoformat()
    assert f"(partitions {latest})" in done.stdout and "2 of 2 exports succeeded" in done.stdout
    assert "ORDERS" in done.stdout and f"rows  partition {latest}\n    {latest}  " in done.stdout
    bucket = Path(embedded["DATA_MIGRATION_LOCAL_DIR"]) / "bucket"
    assert (bucket / "exports/region.csv").is_file()
    assert (bucket / f"exports/orders/month={latest}/data.parquet").is_file()

    refused = command(embedded, tmp_path, "data-migration", "run", "--select", "REGION", "--partition", latest)
    assert refused.returncode == 2 and "apply to partitioned exports" in refused.stderr
    wrong = command(embedded, tmp_path, "data-migration", "run", "--partition", "2024-01-05")
    assert wrong.returncode == 2 and "'2024-01-05' is not one of its monthly partitions" in wrong.stderr

    keys = months(30, 2)
    both = command(
        embedded, tmp_path, "dagster", "asset", "materialize", "-m", "data_migration", "--select", "*",
        "--partition-range", f"{keys[0]}...{keys[-1]}",
    )  # fmt: skip
    assert both.returncode == 0, both.stderr[-3000:]
    assert all((bucket / f"exports/orders/month={k}/data.parquet").is_file() for k in keys)


BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions runs(limit: 10) { runId status } }
    ... on PythonError { message }
  }
}"""


def test_a_backfill_launched_as_the_ui_does_with_dagster_dev(embedded: dict[str, str], tmp_path: Path):
    """The UI's Materialize → partitions dialog sends launchPartitionBackfill; `dagster dev`'s
    daemon runs it, as one run (BackfillPolicy.single_run) committing each month."""
    import requests

    from data_migration_tests.support import PROJECT_ROOT, free_port, wait_until_serving

    port = free_port()
    with open(tmp_path / "dev.log", "w") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-m", "data_migration", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT, env=embedded, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process, tmp_path / "dev.log", "dagster dev")
        keys = months(28, 3)
        params = {"assetSelection": [{"path": ["ORDERS"]}], "partitionNames": keys, "fromFailure": False}
        answer = requests.post(url, json={"query": BACKFILL, "variables": {"params": params}}, timeout=60).json()
        launched = answer["data"]["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 240
        while True:
            variables = {"id": launched["backfillId"]}
            state = requests.post(url, json={"query": BACKFILL_STATUS, "variables": variables}, timeout=60).json()
            backfill = state["data"]["partitionBackfillOrError"]
            if backfill.get("status") in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                break
            assert time.monotonic() < deadline, (backfill, (tmp_path / "dev.log").read_text()[-3000:])
            time.sleep(1)
        assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
        assert [run["status"] for run in backfill["runs"]] == ["SUCCESS"]  # the three months in one run
        bucket = Path(embedded["DATA_MIGRATION_LOCAL_DIR"]) / "bucket"
        assert all((bucket / f"exports/orders/month={k}/data.parquet").is_file() for k in keys)
    finally:
        os.killpg(process.pid, 15)  # dagster dev, its webserver, daemon and code server
        process.wait(timeout=60)


def test_a_partition_can_be_split_into_parts_with_a_manifest(production_env: dict, s3: Any, tmp_path: Path):
    entry = orders_entry(s3_path="exports/orders/{partition}/data.csv", file_type="csv", max_rows_per_file=50)
    defs = build_definitions(write_config(tmp_path / "e.yaml", [entry]), production_env)
    keys = months(15, 2)
    result = run_range(defs, keys[0], keys[-1], dg.DagsterInstance.ephemeral())
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        manifest = json.loads(s3_bytes(s3, f"exports/orders/{event.partition}/data/manifest.json"))
        assert metadata["dagster/uri"].value == f"s3://{BUCKET}/exports/orders/{event.partition}/data/manifest.json"
        assert manifest["row_count"] == metadata["dagster/row_count"].value == sum(f["rows"] for f in manifest["files"])
        assert all(f["rows"] <= 50 for f in manifest["files"]) and len(manifest["files"]) >= 2
