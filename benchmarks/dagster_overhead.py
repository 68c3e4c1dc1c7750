"""Wall time of Dagster around the exports: runs and definitions load.

    .venv/bin/python benchmarks/dagster_overhead.py

Prints, on the embedded default (the emulator and the local folder, in a temporary directory):
- `dagster asset materialize` of one small export, and of all four example exports in one run;
- definitions load for 10, 100 and 1,000 exports: building them in-process, and the whole
  `dagster definitions validate` command (which also serializes them as Dagster's tools do).
Figures are printed, not asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def export_list(path: Path, count: int) -> Path:
    types = ("parquet", "csv", "json")
    exports = []
    for i in range(count):
        file_type = types[i % 3]
        entry = {"table": f"T{i}", "s3_path": f"exports/t{i}/data.{file_type}", "file_type": file_type}
        if i % 2:
            entry["query"] = f"select * from orders where o_orderkey > {i}"
        if i % 5 == 0:
            entry["schedule"] = "0 6 * * *"
        exports.append(entry)
    path.write_text(yaml.safe_dump({"exports": exports}))
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_"))
        }
        env.pop("S3_BUCKET_NAME", None)
        env.update(DAGSTER_HOME=str(work_dir), DATA_MIGRATION_LOCAL_DIR=str(work_dir / "local"))
        materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select"]
        timed(materialize + ["ORDERS"], env, work_dir)  # first run generates the TPC-H data
        one = min(timed(materialize + ["ORDERS"], env, work_dir) for _ in range(2))
        four = min(timed(materialize + ["*"], env, work_dir) for _ in range(2))
        print(f"dagster asset materialize, one export (ORDERS):       {one:5.1f} s")
        print(f"dagster asset materialize, all four examples, one run: {four:5.1f} s  ({four / one:.2f}x)")

        print(f"\n{'exports':>8} {'build in-process':>17} {'definitions validate':>21}")
        for count in (10, 100, 1000):
            config = export_list(work_dir / f"exports_{count}.yaml", count)
            run_env = {**env, "DATA_MIGRATION_CONFIG": str(config)}
            build = [
                sys.executable,
                "-c",
                "import time, data_migration.definitions as d; t = time.perf_counter(); "
                "d.build_definitions().get_repository_def(); print(time.perf_counter() - t)",
            ]
            done = subprocess.run(build, env=run_env, cwd=work_dir, capture_output=True, text=True, check=True)
            in_process = float(done.stdout.strip().splitlines()[-1])
            validate = timed(
                [str(BIN / "dagster"), "definitions", "validate", "-m", "data_migration"], run_env, work_dir
            )
            print(f"{count:>8} {in_process:>16.2f}s {validate:>20.1f}s")


if __name__ == "__main__":
    main()
