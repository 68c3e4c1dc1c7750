"""An incremental export's runs against the whole-table export of the same growing table.

    .venv/bin/python benchmarks/incremental.py [--scale 1] [--rounds 3] [--growth 0.01]

EVENTS starts as ORDERS (1,500,000 rows at SF1) less its newest `growth` × `rounds` share of
O_ORDERKEY; each round adds the next `growth` share (1% by default: 15,000 rows), then times, as
fresh processes from spawn to exit with `data-migration run`: the incremental export (cursor
O_ORDERKEY), the same with nothing new, and the whole table exported as one object. The export
step's own time comes from Dagster's step stats. Snowflake emulator (its own process) -> S3 on
moto. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import BIN, connect, emulated_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--growth", type=float, default=0.01, help="share of the table added per round")
    args = parser.parse_args()
    from dagster import DagsterInstance

    with emulated_services(args.scale) as (env, work, _):
        with connect(env) as connection:
            cursor = connection.cursor()
            keys = [row[0] for row in cursor.execute("SELECT O_ORDERKEY FROM ORDERS ORDER BY 1").fetchall()]
            step = int(len(keys) * args.growth)
            bounds = [keys[len(keys) - step * (args.rounds - r) - 1] for r in range(args.rounds + 1)]
            cursor.execute(f"CREATE OR REPLACE TABLE EVENTS AS SELECT * FROM ORDERS WHERE O_ORDERKEY <= {bounds[0]}")

        cases = {
            "incremental": {"table": "EVENTS", "s3_path": "exports/events/data.parquet",
                            "incremental": {"cursor": "O_ORDERKEY"}},
            "whole table": {"table": "EVENTS", "s3_path": "exports/events_whole/data.parquet"},
        }  # fmt: skip
        commands = {}
        for name, entry in cases.items():
            config = work / f"{name.replace(' ', '_')}.yaml"
            config.write_text(json.dumps({"exports": [entry]}))
            commands[name] = [str(BIN / "data-migration"), "run", "--config", str(config)]

        def timed(command: list[str]) -> tuple[float, float, str]:
            started = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
            run_id = re.findall(r"\(run ([0-9a-f-]{36})\)", done.stdout)[-1]
            with DagsterInstance.from_config(str(work)) as instance:
                stats = {s.step_key: s for s in instance.get_run_step_stats(run_id)}
            *_, summary = [line for line in done.stdout.splitlines() if line.startswith("✓ EVENTS")]  # the summary
            return wall, stats["EVENTS"].end_time - stats["EVENTS"].start_time, " ".join(summary.split())

        first_wall, first_step, first_line = timed(commands["incremental"])
        print(f"first incremental run (every row): {first_wall:.1f} s wall, {first_step:.1f} s step  [{first_line}]")
        results: dict[str, list[tuple[float, float]]] = {"increment": [], "nothing new": [], "whole table": []}
        for round_ in range(args.rounds):
            with connect(env) as connection:
                connection.cursor().execute(
                    f"INSERT INTO EVENTS SELECT * FROM ORDERS WHERE O_ORDERKEY > {bounds[round_]} "
                    f"AND O_ORDERKEY <= {bounds[round_ + 1]}"
                )
            wall, step_s, line = timed(commands["incremental"])
            results["increment"].append((wall, step_s))
            print(f"round {round_ + 1}: {line}")
            wall, step_s, line = timed(commands["incremental"])
            results["nothing new"].append((wall, step_s))
            print(f"round {round_ + 1}: {line}")
            results["whole table"].append(timed(commands["whole table"])[:2])

        print(
            f"\nEVENTS (ORDERS at TPC-H SF{args.scale}) growing by {step:,} rows ({args.growth:.0%}) a round, "
            "emulator -> S3 on moto; medians of "
            f"{args.rounds} interleaved rounds"
        )
        print(f"{'case':<14} {'wall s':>7} {'export step s':>14}")
        for name, values in results.items():
            walls, steps = [v[0] for v in values], [v[1] for v in values]
            print(f"{name:<14} {statistics.median(walls):>7.1f} {statistics.median(steps):>14.1f}")
        whole = statistics.median(v[1] for v in results["whole table"])
        increment = statistics.median(v[1] for v in results["increment"])
        print(f"export step, increment / whole table: {increment / whole:.2f}x")


if __name__ == "__main__":
    main()
