"""What the asset checks cost after an export: metadata (the default) against a full read-back.

    .venv/bin/python benchmarks/check_cost.py --scale 1

Runs `data-migration run` on ORDERS (1,500,000 rows at SF1) as Parquet and as CSV into S3 on a
moto server, with the Snowflake emulator in a process of its own holding TPC-H at the given
scale, once with the default checks and once with `--verify full`, in one sitting. Prints each
run's wall time and the checks' step time (from Dagster's run step stats). Figures are printed,
not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_throughput import BUCKET, moto_server

BIN = Path(sys.executable).parent
EMULATOR = """
import sys, time
from pathlib import Path
from data_migration.local import emulator
print(emulator.ensure_started(Path(sys.argv[1]), sys.argv[2]), flush=True)
while True:
    time.sleep(3600)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    args = parser.parse_args()
    from dagster import DagsterInstance

    with tempfile.TemporaryDirectory() as work, moto_server() as endpoint:
        work_dir = Path(work)
        (work_dir / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        local = Path(__file__).resolve().parent.parent / ".local"  # TPC-H data is generated once
        emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR, str(local), args.scale], stdout=subprocess.PIPE, text=True
        )
        try:
            port = int(emulator.stdout.readline())  # type: ignore[union-attr]
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("SNOWFLAKE_", "AWS_", "DATA_MIGRATION_", "DAGSTER_"))
            }
            env.update(
                SNOWFLAKE_ACCOUNT="emulator", SNOWFLAKE_USER="bench", SNOWFLAKE_PASSWORD="any",
                SNOWFLAKE_HOST="127.0.0.1", SNOWFLAKE_PORT=str(port), SNOWFLAKE_PROTOCOL="http",
                SNOWFLAKE_DATABASE="SNOWFLAKE_SAMPLE_DATA", SNOWFLAKE_SCHEMA="TPCH_SF1",
                S3_BUCKET_NAME=BUCKET, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="x",
                AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1", DAGSTER_HOME=str(work_dir),
            )  # fmt: skip
            print(f"ORDERS at TPC-H SF{args.scale} from the emulator to S3 on moto; checks after each export")
            print(f"{'format':<8} {'checks':<15} {'object MB':>9} {'run s':>7} {'checks s':>9}")
            for file_type in ("parquet", "csv"):
                config = work_dir / f"{file_type}.yaml"
                entry = {"table": "ORDERS", "s3_path": f"exports/orders/data.{file_type}", "file_type": file_type}
                config.write_text(json.dumps({"exports": [entry]}))
                for verify in ("metadata", "full"):
                    command = [str(BIN / "data-migration"), "run", "--config", str(config), "--verify", verify]
                    started = time.perf_counter()
                    done = subprocess.run(command, env=env, cwd=work_dir, capture_output=True, text=True)
                    wall = time.perf_counter() - started
                    if done.returncode != 0:
                        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
                    run_id = re.search(r"\(run ([0-9a-f-]{36})\)\.", done.stdout).group(1)  # type: ignore[union-attr]
                    size = re.search(r"✓ ORDERS\s+[\d,]+ rows\s+([\d.]+) MB", done.stdout)
                    with DagsterInstance.from_config(str(work_dir)) as instance:
                        stats = {s.step_key: s for s in instance.get_run_step_stats(run_id)}
                    checks = stats["ORDERS_checks"]
                    label = "metadata" if verify == "metadata" else "full read-back"
                    print(
                        f"{file_type:<8} {label:<15} {size.group(1) if size else '?':>9} {wall:>7.1f} "
                        f"{checks.end_time - checks.start_time:>9.2f}"
                    )
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)


if __name__ == "__main__":
    main()
