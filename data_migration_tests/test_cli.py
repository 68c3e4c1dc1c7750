"""The real command lines in subprocesses: `dagster asset materialize`, `dagster definitions
validate`, `dagster schedule list`, and the quick start's `data-migration run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from data_migration.config import load_exports
from data_migration_tests.support import (
    AWS_SECRET_CANARY,
    BUCKET,
    EXAMPLE_CONFIG,
    PROJECT_ROOT,
    SNOWFLAKE_PASSWORD_CANARY,
    Snowflake,
    environment_without_settings,
    local_folder,
    write_config,
)

BIN = Path(sys.executable).parent


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        env=environment_without_settings(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dagster_asset_materialize_select_orders(production_env: dict, s3: Any, tmp_path: Path):
    done = run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "ORDERS"],
        production_env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["exports/orders/data.parquet"]  # only the selected export
    assert "RUN_SUCCESS" in done.stderr
    assert "Export complete: 15000 rows" in done.stderr
    for secret in (SNOWFLAKE_PASSWORD_CANARY, AWS_SECRET_CANARY):
        assert secret not in done.stdout + done.stderr


def test_dotenv_in_working_directory_is_read(production_env: dict, s3: Any, tmp_path: Path):
    """As with `dagster dev`: settings can come from a .env file instead of the environment."""
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in production_env.items() if k != "DAGSTER_HOME"))
    done = run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "REGION_EXPORT"],
        {
            "DAGSTER_HOME": production_env["DAGSTER_HOME"],
            "DATA_MIGRATION_CONFIG": str(
                write_config(
                    tmp_path / "e.yaml",
                    [
                        {
                            "table": "REGION_EXPORT",
                            "s3_path": "exports/region.csv",
                            "file_type": "csv",
                            "query": "select * from region",
                        }
                    ],
                )
            ),
        },
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert s3.get_object(Bucket=BUCKET, Key="exports/region.csv")["Body"].read().startswith(b'"R_REGIONKEY"')


def test_definitions_validate_reports_config_errors(production_env: dict, tmp_path: Path, fake_snowflake: Snowflake):
    config = tmp_path / "broken.yaml"
    config.write_text("exports:\n  - table: ORDERS\n    s3_path: ../escape.parquet\n    file_type: xlsx\n")
    logins = fake_snowflake.recorder.logins
    done = run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "data_migration"],
        {**production_env, "DATA_MIGRATION_CONFIG": str(config)},
        tmp_path,
    )
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert f"{config}: exports[0] (ORDERS).file_type: 'xlsx' is not one of parquet, csv, json" in output
    assert "exports[0] (ORDERS).s3_path: '../escape.parquet' contains a '..' segment" in output
    assert fake_snowflake.recorder.logins == logins  # nothing reached Snowflake


def test_definitions_validate_reports_incomplete_settings(tmp_path: Path):
    done = run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "data_migration"],
        {"SNOWFLAKE_ACCOUNT": "acme-prod", "DAGSTER_HOME": str(tmp_path)},
        tmp_path,
    )
    assert done.returncode == 1
    assert "missing: SNOWFLAKE_USER, S3_BUCKET_NAME" in done.stdout + done.stderr


def test_schedule_list_shows_the_daily_schedule(tmp_path: Path):
    done = run(
        [str(BIN / "dagster"), "schedule", "list", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        {"DAGSTER_HOME": str(tmp_path), "DATA_MIGRATION_LOCAL_DIR": str(tmp_path / "local")},
        PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exports_0_6_x_x_x_schedule" in done.stdout


def sections(stdout: str) -> tuple[list[str], list[str], str]:
    """`data-migration run`'s output: the live part, the summary lines, and the closing line."""
    live, summary, total = stdout.strip("\n").split("\n\n")[:3]
    return live.splitlines(), summary.splitlines(), total


def test_quickstart_run_on_the_embedded_default(tmp_path: Path, tpch_dir: Path):
    """`data-migration run` with no credentials: the emulator, TPC-H data and a local bucket folder."""
    local = local_folder(tmp_path, tpch_dir)
    done = run([str(BIN / "data-migration"), "run"], {"DATA_MIGRATION_LOCAL_DIR": str(local)}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    live, summary, total = sections(done.stdout)
    names = ["CUSTOMER", "ORDERS", "ORDER_SUMMARY", "RECENT_ORDERS"]
    assert [line.split()[:2] for line in summary] == [["✓", name] for name in sorted(names)]
    assert total.startswith("4 of 4 exports succeeded")
    # A line when each export starts and one when it ends, in order, then the checks.
    marks = [line.split()[:2] for line in live if line.startswith(("▸", "✓", "✗"))]
    assert marks == [pair for name in names for pair in (["▸", name], ["✓", name])]
    assert any(line.startswith("✓ ORDERS") and "15,000 rows" in line and "kB" in line for line in live)
    # One form of a count, while the run goes and in the summary (issue 34: it was 15000 there).
    assert any(line.startswith("✓ ORDERS") and " 15,000 rows  file://" in line for line in summary), summary
    assert live[-1] == "Checks: 12 of 12 passed."
    assert any(line.startswith("Source: embedded Snowflake emulator") for line in live)
    assert any(line.startswith("Destination: local folder") for line in live)
    # Quiet: a person's budget of lines, none of Dagster's event log, nothing on stderr.
    assert len(done.stdout.splitlines()) <= 40, done.stdout
    for noise in ("DEBUG", "STEP_START", "RUN_SUCCESS", "Traceback"):
        assert noise not in done.stdout + done.stderr
    assert done.stderr == ""
    bucket = local / "bucket" / "exports"
    count = duckdb.sql(f"select count(*) from read_parquet('{bucket}/orders/data.parquet')").fetchall()
    assert count == [(15000,)]
    recent = duckdb.sql(f"select count(*) from read_parquet('{bucket}/recent_orders/data.parquet')").fetchall()
    assert recent[0][0] > 0
    summary_csv = duckdb.sql(
        f"select count(*), sum(ORDER_COUNT) from read_csv('{bucket}/order_summary/data.csv')"
    ).fetchall()
    assert summary_csv == [(1000, 15000)]


def test_the_round_trip_list_loads_into_snowflake_only_when_run(tmp_path: Path, tpch_dir: Path):
    """The shipped list only reads; config/round_trip.yaml, which its comment says writes to the
    account, is the opt-in: `data-migration run --config config/round_trip.yaml`."""
    default = load_exports(EXAMPLE_CONFIG)
    assert not default.loads and "round_trip.yaml" in EXAMPLE_CONFIG.read_text()
    round_trip = PROJECT_ROOT / "config" / "round_trip.yaml"
    assert "WRITES to the account" in round_trip.read_text()
    local = local_folder(tmp_path, tpch_dir)
    done = run(
        [str(BIN / "data-migration"), "run", "--config", str(round_trip)],
        {"DATA_MIGRATION_LOCAL_DIR": str(local)},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _, summary, total = sections(done.stdout)
    assert total.startswith("2 of 2 exports and loads succeeded")
    (restored,) = [line for line in summary if line.startswith("✓ ORDERS_RESTORED")]
    assert '15,000 rows  15,000 loaded into "ORDERS_RESTORED" (replace)' in restored


def test_verbose_adds_dagsters_event_log(tmp_path: Path, tpch_dir: Path):
    local = local_folder(tmp_path, tpch_dir)
    done = run(
        [str(BIN / "data-migration"), "run", "--select", "ORDERS", "--verbose"],
        {"DATA_MIGRATION_LOCAL_DIR": str(local)},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "STEP_START" in done.stderr and "RUN_SUCCESS" in done.stderr and "DEBUG" in done.stderr
    assert "1 of 1 exports succeeded" in done.stdout


SPLIT_LINEITEM = [{"table": "LINEITEM", "s3_path": "l.csv", "file_type": "csv", "max_rows_per_file": 5000}]


def test_progress_lines_when_output_is_not_a_terminal(tmp_path: Path, tpch_dir: Path):
    """Piped (CI logs): each progress report is a plain line; here one per batch (interval 0)."""
    local = local_folder(tmp_path, tpch_dir)
    config = write_config(tmp_path / "e.yaml", SPLIT_LINEITEM)
    done = run(
        [str(BIN / "data-migration"), "run", "--config", str(config)],
        {"DATA_MIGRATION_LOCAL_DIR": str(local), "DATA_MIGRATION_PROGRESS_SECONDS": "0"},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    live, _, _ = sections(done.stdout)
    progress = [line for line in live if line.startswith("  LINEITEM  ")]
    rows = [int(line.split()[1].replace(",", "")) for line in progress]
    # At least once per part of 5,000 rows (batch boundaries add more), rising to the full count.
    assert len(rows) >= 13 and rows == sorted(set(rows)) and rows[-1] == 60_175
    assert {5000 * n for n in range(1, 13)} <= set(rows)
    assert all(" MB in " in line for line in progress)
    assert "\r" not in done.stdout
    assert live.index(progress[0]) == live.index("▸ LINEITEM") + 1
    assert live[live.index(progress[-1]) + 1].startswith("✓ LINEITEM")


def test_progress_is_redrawn_in_place_on_a_terminal(tmp_path: Path, tpch_dir: Path):
    import pty

    local = local_folder(tmp_path, tpch_dir)
    config = write_config(tmp_path / "e.yaml", SPLIT_LINEITEM)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "data-migration"), "run", "--config", str(config)],
        env=environment_without_settings(DATA_MIGRATION_LOCAL_DIR=str(local), DATA_MIGRATION_PROGRESS_SECONDS="0"),
        cwd=tmp_path,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=240) == 0, process.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
    text = output.decode().replace("\r\n", "\n")
    redraws = text.count("\r\x1b[K  LINEITEM  ")
    assert redraws >= 13  # at least once per part of 5,000 rows, each drawn over the one before
    assert "\r\x1b[K  LINEITEM  60,175 rows" in text
    assert "\r\x1b[K✓ LINEITEM" in text  # the end line replaces the progress line
    assert "\n  LINEITEM  " not in text  # never a line of its own


@pytest.mark.parametrize("keep_runs", [True, False])
def test_quickstart_run_reports_a_failure_and_where_its_log_is(tmp_path: Path, tpch_dir: Path, keep_runs: bool):
    from dagster import DagsterInstance, DagsterRunStatus

    local = local_folder(tmp_path, tpch_dir)
    config = write_config(
        tmp_path / "e.yaml",
        [{"table": "NATION", "s3_path": "n.parquet"}, {"table": "NO_SUCH_TABLE", "s3_path": "x.parquet"}],
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {"DATA_MIGRATION_LOCAL_DIR": str(local), **({"DAGSTER_HOME": str(home)} if keep_runs else {})}
    done = run([str(BIN / "data-migration"), "run", "--config", str(config)], env, tmp_path)
    assert done.returncode == 1
    live, summary, total = sections(done.stdout)
    assert summary[0].startswith("✓ NATION")
    for lines in (live, summary):  # said when it happens, and again in the summary
        failed = next(line for line in lines if line.startswith("✗"))
        assert failed.startswith("✗ NO_SUCH_TABLE  export NO_SUCH_TABLE failed in Snowflake (ProgrammingError)")
        assert "does not exist" in failed and "[not retried:" in failed
    assert total.startswith("1 of 2 exports succeeded")
    run_id = total.split("(run ")[1].split(")")[0]
    where = total.splitlines()[-1]
    if keep_runs:
        assert where == (
            f"Full log: run {run_id} in DAGSTER_HOME={home}; with `dagster dev` on that DAGSTER_HOME "
            f"it is at http://127.0.0.1:3000/runs/{run_id}"
        )
        with DagsterInstance.from_config(str(home)) as instance:
            stored = instance.get_run_by_id(run_id)
            assert stored is not None and stored.status == DagsterRunStatus.FAILURE
    else:
        assert where.startswith("Full log: not kept, since DAGSTER_HOME is not set")
    assert "Traceback" not in done.stdout + done.stderr


BAD_LIST = (
    "exports:\n  - {table: ORDERS, s3_path: ../x.parquet, file_type: xlsx}\n"
    "  - {table: NATION, s3_path: x/n.parquet, query: 'SELECT * FROM NATION /* unterminated'}\n"
)
BAD_LIST_PROBLEMS = (
    "exports[0] (ORDERS).file_type: 'xlsx' is not one of parquet, csv, json",
    "exports[0] (ORDERS).s3_path: '../x.parquet' contains a '..' segment",
    # sqlglot's TokenError, which escaped as a traceback (exit 1)
    "exports[1] (NATION).query: could not be parsed as Snowflake SQL: a /* comment is not closed with */",
)
INCOMPLETE = "Snowflake/S3 settings are incomplete: SNOWFLAKE_ACCOUNT set, but missing: SNOWFLAKE_USER, S3_BUCKET_NAME"


@pytest.mark.parametrize(
    "how, expected",
    [
        ("DATA_MIGRATION_CONFIG in the environment", BAD_LIST_PROBLEMS),
        ("--config", BAD_LIST_PROBLEMS),
        ("DATA_MIGRATION_CONFIG in .env", BAD_LIST_PROBLEMS),
        ("missing list", ("nowhere.yaml: file not found",)),
        ("half the settings in the environment", (INCOMPLETE,)),
        ("half the settings in .env", (INCOMPLETE,)),
        ("a bad project setting", ("DATA_MIGRATION_PROGRESS_SECONDS='soon' must be a number of seconds",)),
        ("DAGSTER_HOME not a folder", ("is not a directory or does not exist",)),
    ],
)
def test_every_config_or_settings_error_exits_2_without_a_traceback(
    tmp_path: Path, how: str, expected: tuple[str, ...]
):
    (tmp_path / "bad.yaml").write_text(BAD_LIST)
    env: dict[str, str] = {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path / "local")}
    args: list[str] = []
    if how == "DATA_MIGRATION_CONFIG in the environment":
        env["DATA_MIGRATION_CONFIG"] = "bad.yaml"  # relative to the working directory
    elif how == "--config":
        args = ["--config", "bad.yaml"]
    elif how == "DATA_MIGRATION_CONFIG in .env":
        (tmp_path / ".env").write_text("DATA_MIGRATION_CONFIG=bad.yaml\n")
    elif how == "missing list":
        env["DATA_MIGRATION_CONFIG"] = "nowhere.yaml"
    elif how == "half the settings in the environment":
        env["SNOWFLAKE_ACCOUNT"] = "acme-prod"
    elif how == "half the settings in .env":
        (tmp_path / ".env").write_text("SNOWFLAKE_ACCOUNT=acme-prod\n")
    elif how == "a bad project setting":
        env["DATA_MIGRATION_PROGRESS_SECONDS"] = "soon"
    else:
        env["DAGSTER_HOME"] = str(tmp_path / "no-such-folder")
    done = run([str(BIN / "data-migration"), "run", *args], env, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    for text in expected:
        assert text in done.stderr
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "local").exists()  # nothing started


@pytest.mark.parametrize("setting", ["DATA_MIGRATION_CONFIG", "SNOWFLAKE_ACCOUNT"])
def test_the_quickstart_script_itself_exits_2_on_bad_input(tmp_path: Path, setting: str):
    """The newcomer's literal commands: `DATA_MIGRATION_CONFIG=bad.yaml ./quickstart run` and
    `SNOWFLAKE_ACCOUNT=acct ./quickstart run`."""
    (tmp_path / "bad.yaml").write_text(BAD_LIST)
    value = str(tmp_path / "bad.yaml") if setting == "DATA_MIGRATION_CONFIG" else "acct"
    done = run([str(PROJECT_ROOT / "quickstart"), "run"], {setting: value}, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    expected = BAD_LIST_PROBLEMS[0] if setting == "DATA_MIGRATION_CONFIG" else "settings are incomplete"
    assert expected in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("selection", [["ORDERS"], ["NOPE"]])
def test_quickstart_run_select(tmp_path: Path, tpch_dir: Path, selection: list[str]):
    local = local_folder(tmp_path, tpch_dir)
    done = run(
        [str(BIN / "data-migration"), "run", "--select", *selection], {"DATA_MIGRATION_LOCAL_DIR": str(local)}, tmp_path
    )
    if selection == ["NOPE"]:
        assert done.returncode == 2 and "no export named NOPE" in done.stderr
    else:
        assert done.returncode == 0, done.stderr[-2000:]
        assert "1 of 1 exports succeeded" in done.stdout
        assert sorted(p.name for p in (local / "bucket" / "exports").iterdir()) == ["orders"]


def test_run_summary_reports_a_failed_check(
    tmp_path: Path, tpch_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """In-process, so the writer can be made to drop a batch: the check catches the short file."""
    import pyarrow as pa

    from data_migration import cli
    from data_migration.files import layout
    from data_migration.snowflake import queries as source

    local = local_folder(tmp_path, tpch_dir)
    config = write_config(tmp_path / "e.yaml", [{"table": "LINEITEM", "s3_path": "l.csv", "file_type": "csv"}])
    for name in list(os.environ):
        if name.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_")) or name == "S3_BUCKET_NAME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATA_MIGRATION_LOCAL_DIR", str(local))
    monkeypatch.setenv("DATA_MIGRATION_CONFIG", str(config))  # restored after the test; cli sets it too
    monkeypatch.chdir(tmp_path)
    original = layout._Part.write  # where every batch (or its encoded bytes) reaches the writer
    calls: list[int] = []

    def drops_one(self: object, batch: pa.RecordBatch, encoded: object = None) -> None:
        calls.append(batch.num_rows)
        if len(calls) != 3:
            original(self, batch, encoded)

    monkeypatch.setattr(layout._Part, "write", drops_one)
    monkeypatch.setattr(
        source, "iter_batches", lambda tables: (b for t in tables for b in t.to_batches(max_chunksize=10_000))
    )
    # A CSV writer's own bug is what the full read-back is for (the default checks compare sizes,
    # CRC32s and Parquet footers); --verify full asks for it for this run.
    assert cli.main(["run", "--config", str(config), "--verify", "full"]) == 1
    out = capsys.readouterr().out
    _, summary, _ = sections(out)
    assert [line.split()[:3] for line in summary if line.startswith("✗")] == [["✗", "LINEITEM", "60,175"]]
    assert (
        f"check failed: row_count_matches_source: {60175 - calls[2]} rows in the object, 60175 reported by Snowflake"
        in out
    )
    assert "0 of 1 exports succeeded" in out
