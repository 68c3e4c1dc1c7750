"""LINEITEM loaded back into Snowflake: through a temporary internal stage (PUT) against the external
stage over the bucket (SNOWFLAKE_EXPORT_STAGE), with the worker's memory and bytes, from parts and
from one large object.

    .venv/bin/python benchmarks/load.py [--scale 1] [--rounds 2] [--part-rows 1000000]

The embedded emulator (its own process, so that the worker's memory is the worker's) holds TPC-H
at `scale` and has the stage EXPORTS over a bucket on moto; a counting TCP proxy sits between the
worker and the emulator. LINEITEM is exported once in parts of `part-rows` rows and once as one
object (streamed); then each case is a fresh `data-migration run --select <load>` process, a
`replace` of a copy from the parts or from the one object (which PUT sends in pieces):
wall time (spawn to exit), the worker's peak RSS, and the bytes the worker sent to "Snowflake"
(the files themselves when PUT; statements only with the external stage). Rounds are
interleaved. Figures are printed, not asserted.
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
from export_throughput import BUCKET, moto_server
from services import BIN, EXPORT_STAGE, staged_emulator, worker_env

from data_migration_tests.faultproxy import UP, FaultProxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part-rows", type=int, default=1_000_000, help="rows per exported part")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, moto_server() as endpoint:
        work = Path(scratch)
        (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with staged_emulator(args.scale, endpoint) as port:
            proxy = FaultProxy("127.0.0.1", port)
            base = worker_env(proxy.port, endpoint, work)
            config = {
                "exports": [
                    {
                        "table": "LINEITEM",
                        "s3_path": "exports/lineitem/data.parquet",
                        "max_rows_per_file": args.part_rows,
                    },
                    {"table": "LINEITEM_WHOLE", "query": "SELECT * FROM LINEITEM", "s3_path": "exports/whole.parquet"},
                ],
                "loads": [
                    {"table": "LINEITEM_COPY", "from": "LINEITEM", "mode": "replace"},
                    {"table": "LINEITEM_ONE", "from": "LINEITEM_WHOLE", "mode": "replace"},
                ],
            }
            (work / "list.yaml").write_text(json.dumps(config))

            def run(select: str, env: dict[str, str]) -> tuple[float, float, int, str]:
                before = proxy.bytes_seen[UP]
                started = time.perf_counter()
                command = [str(BIN / "data-migration"), "run", "--config", str(work / "list.yaml"), "--select", select]
                process = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                _, status, usage = os.wait4(process.pid, 0)
                wall = time.perf_counter() - started
                out = process.stdout.read().decode()  # type: ignore[union-attr]
                if status != 0:
                    raise SystemExit(f"{select} failed:\n{out[-3000:]}{process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                return wall, usage.ru_maxrss / 1024, proxy.bytes_seen[UP] - before, out

            exported = run("LINEITEM", base)
            print(f"LINEITEM exported once in parts in {exported[0]:.1f} s")
            exported = run("LINEITEM_WHOLE", base)
            print(f"LINEITEM exported once as one object in {exported[0]:.1f} s")
            stage = {**base, "SNOWFLAKE_EXPORT_STAGE": EXPORT_STAGE}
            cases = {
                "parts, PUT": ("LINEITEM_COPY", base),
                "parts, external stage": ("LINEITEM_COPY", stage),
                "one object, PUT": ("LINEITEM_ONE", base),
                "one object, external": ("LINEITEM_ONE", stage),
            }
            results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cases}
            last = ""
            for _ in range(args.rounds):
                for name, (select, env) in cases.items():
                    wall, rss, sent, last = run(select, env)
                    results[name].append((wall, rss, sent))
            summary = [line for line in last.splitlines() if line.startswith("✓ LINEITEM_ONE")]
            print(f"last run: {summary[-1].strip() if summary else '?'}")
            files = sum(1 for key in json.loads(_manifest(endpoint))["files"])
            print(
                f"LINEITEM at TPC-H SF{args.scale} in {files} Parquet part(s) and as one object, "
                "loaded with mode replace "
                f"(emulator in its own process, files on moto), medians of {args.rounds} interleaved rounds"
            )
            print(f"{'source, stage':<22} {'wall s':>7} {'worker peak RSS MiB':>20} {'bytes to Snowflake':>19}")
            for name, values in results.items():
                wall = statistics.median(v[0] for v in values)
                rss = statistics.median(v[1] for v in values)
                sent = statistics.median(v[2] for v in values)
                print(f"{name:<22} {wall:>7.1f} {rss:>20.0f} {sent:>19,.0f}")
            proxy.stop()


def _manifest(endpoint: str) -> bytes:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client.get_object(Bucket=BUCKET, Key="exports/lineitem/data/manifest.json")["Body"].read()


if __name__ == "__main__":
    main()
