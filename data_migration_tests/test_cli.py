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

from data_migration_tests.conftest import (
    AWS_SECRET_CANARY,
    BUCKET,
    PROJECT_ROOT,
    SNOWFLAKE_PASSWORD_CANARY,
    Snowflake,
    write_config,
)

BIN = Path(sys.executable).parent


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_"))}
    base.pop("S3_BUCKET_NAME", None)
    return subprocess.run(
        command, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def test_dagster_asset_materialize_select_orders(production_env: dict, s3: Any, tmp_path: Path):
    done = run([str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "ORDERS"], production_env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["exports/orders/data.parquet"]  # only the selected export
    assert "RUN_SUCCESS" in done.stderr
    assert f"Export complete: 15000 rows" in done.stderr
    for secret in (SNOWFLAKE_PASSWORD_CANARY, AWS_SECRET_CANARY):
        assert secret not in done.stdout + done.stderr


def test_dotenv_in_working_directory_is_read(production_env: dict, s3: Any, tmp_path: Path):
    """As with `dagster dev`: settings can come from a .env file instead of the environment."""
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in production_env.items() if k != "DAGSTER_HOME"))
    done = run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "REGION_EXPORT"],
        {"DAGSTER_HOME": production_env["DAGSTER_HOME"], "DATA_MIGRATION_CONFIG": str(write_config(
            tmp_path / "e.yaml", [{"table": "REGION_EXPORT", "s3_path": "exports/region.csv", "file_type": "csv", "query": "select * from region"}]
        ))},
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


def test_quickstart_run_on_the_embedded_default(tmp_path: Path, tpch_dir: Path):
    """`data-migration run` with no credentials: the emulator, TPC-H data and a local bucket folder."""
    local = tmp_path / "local"
    (local / "tpch").mkdir(parents=True)
    (local / "tpch" / "sf0.01").symlink_to(tpch_dir)  # reuse the session's generated data
    done = run([str(BIN / "data-migration"), "run"], {"DATA_MIGRATION_LOCAL_DIR": str(local)}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(("✓", "✗"))]
    assert [line.split()[:2] for line in lines] == [
        ["✓", "CUSTOMER"], ["✓", "ORDERS"], ["✓", "ORDER_SUMMARY"], ["✓", "RECENT_ORDERS"]
    ]
    assert "4 of 4 exports succeeded" in done.stdout
    assert "Source: embedded Snowflake emulator" in done.stderr
    assert "Destination: local folder" in done.stderr
    bucket = local / "bucket" / "exports"
    count = duckdb.sql(f"select count(*) from read_parquet('{bucket}/orders/data.parquet')").fetchall()
    assert count == [(15000,)]
    recent = duckdb.sql(f"select count(*) from read_parquet('{bucket}/recent_orders/data.parquet')").fetchall()
    assert recent[0][0] > 0
    summary = duckdb.sql(f"select count(*), sum(ORDER_COUNT) from read_csv('{bucket}/order_summary/data.csv')").fetchall()
    assert summary == [(1000, 15000)]


def test_quickstart_run_reports_a_failure_and_exits_nonzero(tmp_path: Path, tpch_dir: Path):
    local = tmp_path / "local"
    (local / "tpch").mkdir(parents=True)
    (local / "tpch" / "sf0.01").symlink_to(tpch_dir)
    config = write_config(
        tmp_path / "e.yaml",
        [{"table": "NATION", "s3_path": "n.parquet"}, {"table": "NO_SUCH_TABLE", "s3_path": "x.parquet"}],
    )
    done = run(
        [str(BIN / "data-migration"), "run", "--config", str(config)], {"DATA_MIGRATION_LOCAL_DIR": str(local)}, tmp_path
    )
    assert done.returncode == 1
    assert "✓ NATION" in done.stdout
    failed = next(line for line in done.stdout.splitlines() if line.startswith("✗"))
    assert "NO_SUCH_TABLE" in failed and "Error" in failed
    assert "1 of 2 exports succeeded" in done.stdout


def test_quickstart_run_rejects_a_bad_config_before_running(tmp_path: Path):
    config = tmp_path / "e.yaml"
    config.write_text("exports:\n  - {table: A, s3_path: /abs.parquet}\n")
    done = run([str(BIN / "data-migration"), "run", "--config", str(config)], {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}, tmp_path)
    assert done.returncode == 2
    assert "exports[0] (A).s3_path: '/abs.parquet' must be relative to the bucket" in done.stderr
    assert not (tmp_path / "tpch").exists()  # nothing started


@pytest.mark.parametrize("selection", [["ORDERS"], ["NOPE"]])
def test_quickstart_run_select(tmp_path: Path, tpch_dir: Path, selection: list[str]):
    local = tmp_path / "local"
    (local / "tpch").mkdir(parents=True)
    (local / "tpch" / "sf0.01").symlink_to(tpch_dir)
    done = run([str(BIN / "data-migration"), "run", "--select", *selection], {"DATA_MIGRATION_LOCAL_DIR": str(local)}, tmp_path)
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

    from data_migration import cli, source
    from data_migration.formats import FORMATS

    local = tmp_path / "local"
    (local / "tpch").mkdir(parents=True)
    (local / "tpch" / "sf0.01").symlink_to(tpch_dir)
    config = write_config(tmp_path / "e.yaml", [{"table": "LINEITEM", "s3_path": "l.csv", "file_type": "csv"}])
    for name in list(os.environ):
        if name.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_")) or name == "S3_BUCKET_NAME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATA_MIGRATION_LOCAL_DIR", str(local))
    monkeypatch.setenv("DATA_MIGRATION_CONFIG", str(config))  # restored after the test; cli sets it too
    monkeypatch.chdir(tmp_path)
    writer = FORMATS["csv"].writer
    original = writer.write_batch
    calls: list[int] = []

    def drops_one(self: object, batch: pa.RecordBatch) -> None:
        calls.append(batch.num_rows)
        if len(calls) != 3:
            original(self, batch)

    monkeypatch.setattr(writer, "write_batch", drops_one)
    monkeypatch.setattr(source, "iter_batches", lambda tables: (b for t in tables for b in t.to_batches(max_chunksize=10_000)))
    assert cli.main(["run", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines() if line.startswith("✗")] == [["✗", "LINEITEM", "60175"]]
    assert f"check failed: row_count_matches_source: {60175 - calls[2]} rows in the object, 60175 reported by Snowflake" in out
    assert "0 of 1 exports succeeded" in out
