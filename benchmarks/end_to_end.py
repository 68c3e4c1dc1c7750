"""End to end, as a user runs it: the project's commands against a plain script, same data.

    .venv/bin/python benchmarks/end_to_end.py [--scale 1] [--rounds 3]

ORDERS (1,500,000 rows at SF1) from the Snowflake emulator (its own process) to S3 on a moto
server, each case a fresh process timed from spawn to exit, the cases interleaved round by
round so that they share the machine's state. The cases:

- fetch: connect, query, pull every Arrow batch, discard (the floor of any tool);
- plain script (benchmarks/plain_script.py): fetch, pyarrow writer, boto3 multipart upload;
- `dagster asset materialize -m data_migration --select ORDERS`, its checks included;
- `data-migration run --select ORDERS`, its checks included.

Prints each case's median wall time and its ratio to the plain script. Figures are printed, not
asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import BIN, emulated_services

HERE = Path(__file__).resolve().parent


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", default="parquet,csv")
    args = parser.parse_args()
    formats = args.formats.split(",")

    with emulated_services(args.scale) as (env, work, _):
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "fetch only": ([sys.executable, str(HERE / "plain_script.py"), "fetch", "ORDERS", "-"], env),
        }
        for file_type in formats:
            config = work / f"{file_type}.yaml"
            entry = {"table": "ORDERS", "s3_path": f"exports/orders/data.{file_type}", "file_type": file_type}
            config.write_text(json.dumps({"exports": [entry]}))
            with_config = {**env, "DATA_MIGRATION_CONFIG": str(config)}
            cases[f"{file_type}: plain script"] = (
                [sys.executable, str(HERE / "plain_script.py"), file_type, "ORDERS", f"plain/orders.{file_type}"],
                env,
            )
            cases[f"{file_type}: dagster asset materialize"] = (
                [str(BIN / "dagster"), "asset", "materialize", "-m", "data_migration", "--select", "ORDERS"],
                with_config,
            )
            cases[f"{file_type}: data-migration run"] = (
                [str(BIN / "data-migration"), "run", "--select", "ORDERS"],
                with_config,
            )
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (command, case_env) in cases.items():
                times[name].append(timed(command, case_env, work))
        print(f"ORDERS at TPC-H SF{args.scale}, emulator -> S3 on moto, median of {args.rounds} interleaved rounds")
        print(f"{'case':<40} {'median s':>9} {'vs plain':>9}   all runs")
        for name, values in times.items():
            file_type = name.split(":", 1)[0]
            plain = times.get(f"{file_type}: plain script")
            ratio = f"{statistics.median(values) / statistics.median(plain):>8.2f}x" if plain else " " * 9
            runs = " ".join(f"{v:.1f}" for v in values)
            print(f"{name:<40} {statistics.median(values):>9.1f} {ratio}   {runs}")


if __name__ == "__main__":
    main()
