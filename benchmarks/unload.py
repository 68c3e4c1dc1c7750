"""LINEITEM exported by streaming through the worker against Snowflake's unload (`method: unload`).

    .venv/bin/python benchmarks/unload.py [--scale 1] [--rounds 2]

The embedded emulator (its own process, so that the worker's memory is the worker's) holds TPC-H
at `scale` and has the stage EXPORTS over a bucket on moto; a counting TCP proxy sits between the
worker and the emulator. Each case is a fresh `data-migration run` process; printed per case:
wall time (spawn to exit), the worker's peak RSS, and the bytes the worker received from
"Snowflake" (the query's result when streaming; the statement's output rows when unloading).
Rounds are interleaved. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from export_throughput import moto_server
from services import BIN, EXPORT_STAGE, staged_emulator, worker_env

from data_migration_tests.faultproxy import DOWN, FaultProxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, moto_server() as endpoint:
        work = Path(scratch)
        (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with staged_emulator(args.scale, endpoint) as port:
            proxy = FaultProxy("127.0.0.1", port)
            env = {**worker_env(proxy.port, endpoint, work), "SNOWFLAKE_EXPORT_STAGE": EXPORT_STAGE}
            cases = {
                "stream": {"table": "LINEITEM", "s3_path": "exports/stream/data.parquet"},
                "unload": {"table": "LINEITEM", "s3_path": "exports/unload/data.parquet", "method": "unload",
                           "max_file_size_mb": 256},
            }  # fmt: skip
            commands = {}
            for name, entry in cases.items():
                (work / f"{name}.yaml").write_text(json.dumps({"exports": [entry]}))
                commands[name] = [str(BIN / "data-migration"), "run", "--config", str(work / f"{name}.yaml")]
            results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, command in commands.items():
                    before = proxy.bytes_seen[DOWN]
                    started = time.perf_counter()
                    process = subprocess.Popen(
                        command, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                    )
                    _, status, usage = os.wait4(process.pid, 0)
                    wall = time.perf_counter() - started
                    out = process.stdout.read().decode()  # type: ignore[union-attr]
                    if status != 0:
                        raise SystemExit(f"{name} failed:\n{out[-3000:]}{process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                    received = proxy.bytes_seen[DOWN] - before
                    results[name].append((wall, usage.ru_maxrss / 1024, received))
            print(
                f"LINEITEM at TPC-H SF{args.scale} (emulator in its own process -> S3 on moto), "
                f"medians of {args.rounds} interleaved rounds"
            )
            print(f"{'method':<8} {'wall s':>7} {'worker peak RSS MiB':>20} {'bytes from Snowflake':>21}")
            for name, values in results.items():
                wall = statistics.median(v[0] for v in values)
                rss = statistics.median(v[1] for v in values)
                received = statistics.median(v[2] for v in values)
                print(f"{name:<8} {wall:>7.1f} {rss:>20.0f} {received:>21,.0f}")
            proxy.stop()


if __name__ == "__main__":
    main()
