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
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import BIN, emulated_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    args = parser.parse_args()
    from dagster import DagsterInstance

    with emulated_services(args.scale) as (env, work_dir, _):
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


if __name__ == "__main__":
    main()
