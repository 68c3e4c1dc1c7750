"""A single-run backfill of every monthly partition of ORDERS against one unpartitioned export.

    .venv/bin/python benchmarks/partition_backfill.py [--scale 1] [--rounds 2]

ORDERS (1,500,000 rows at SF1, about 80 months) from the Snowflake emulator (its own process) to
S3 on moto, with `data-migration run`: once unpartitioned, once with `--partition-range` over
every month that holds rows (one run; one query per partition, on one connection). Each case is a
fresh process timed from spawn to exit; the export step's own time comes from Dagster's step
stats. Rounds are interleaved. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import BIN, emulated_services


def months_with_rows(env: dict[str, str]) -> tuple[str, str, str]:
    """The first month with rows, the last complete one, and the first day after it."""
    import snowflake.connector

    with snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"], user=env["SNOWFLAKE_USER"], password=env["SNOWFLAKE_PASSWORD"],
        host=env["SNOWFLAKE_HOST"], port=int(env["SNOWFLAKE_PORT"]), protocol=env["SNOWFLAKE_PROTOCOL"],
        database=env["SNOWFLAKE_DATABASE"], schema=env["SNOWFLAKE_SCHEMA"],
    ) as connection:  # fmt: skip
        low, high = connection.cursor().execute("SELECT MIN(O_ORDERDATE), MAX(O_ORDERDATE) FROM ORDERS").fetchone()
    current = high.replace(day=1)  # the emulator's newest order is today: this month is not complete
    last = (current - dt.timedelta(days=1)).replace(day=1)
    return low.replace(day=1).isoformat(), last.isoformat(), current.isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from dagster import DagsterInstance

    with emulated_services(args.scale) as (env, work, _):
        first, last, after = months_with_rows(env)
        # The same rows both ways: every complete month.
        plain = {
            "table": "ORDERS",
            "s3_path": "exports/orders/data.parquet",
            "query": f"SELECT * FROM ORDERS WHERE O_ORDERDATE < '{after}'",
        }
        monthly = {
            "table": "ORDERS",
            "s3_path": "exports/orders_by_month/{partition}/data.parquet",
            "partition": {"column": "O_ORDERDATE", "granularity": "monthly", "start": first},
        }
        cases = {}
        for name, entry, extra in (
            ("unpartitioned", plain, []),
            ("monthly backfill", monthly, ["--partition-range", f"{first}...{last}"]),
        ):
            config = work / f"{name.replace(' ', '_')}.yaml"
            config.write_text(json.dumps({"exports": [entry]}))
            cases[name] = [str(BIN / "data-migration"), "run", "--config", str(config), *extra]
        walls: dict[str, list[float]] = {name: [] for name in cases}
        steps: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, command in cases.items():
                started = time.perf_counter()
                done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
                walls[name].append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
                run_id = re.findall(r"\(run ([0-9a-f-]{36})\)", done.stdout)[-1]
                with DagsterInstance.from_config(str(work)) as instance:
                    stats = {s.step_key: s for s in instance.get_run_step_stats(run_id)}
                step = stats["ORDERS"]
                steps[name].append(step.end_time - step.start_time)
        count = len(_month_keys(first, last))
        print(f"ORDERS at TPC-H SF{args.scale}, emulator -> S3 on moto; {count} monthly partitions ({first} … {last})")
        print(f"{'case':<18} {'wall s':>7} {'export step s':>14}   all runs (wall)")
        for name in cases:
            print(
                f"{name:<18} {statistics.median(walls[name]):>7.1f} {statistics.median(steps[name]):>14.1f}   "
                + " ".join(f"{v:.1f}" for v in walls[name])
            )
        ratio = statistics.median(walls["monthly backfill"]) / statistics.median(walls["unpartitioned"])
        step_ratio = statistics.median(steps["monthly backfill"]) / statistics.median(steps["unpartitioned"])
        print(f"backfill / unpartitioned: {ratio:.2f}x wall, {step_ratio:.2f}x export step")


def _month_keys(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    keys = []
    while f"{year:04d}-{month:02d}-01" <= last:
        keys.append(f"{year:04d}-{month:02d}-01")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys


if __name__ == "__main__":
    main()
