"""A nightly run of 50 exports of which 5 tables changed: `skip_unchanged: true` against the same
list without it.

    .venv/bin/python benchmarks/nightly.py [--scale 1] [--source ORDERS] [--tables 50] [--changed 5] [--rounds 3]

T00 … T49 split a TPC-H table at `scale` (ORDERS: 1,500,000 rows at SF1, 50 tables of about 30,000
rows; LINEITEM: 6,001,215 rows, about 120,000 each) by order key. Two lists export them, one
with `skip_unchanged: true`, one without; both run once to start. Each round then inserts a row
into `changed` tables and runs each list as a fresh process (`data-migration run`, spawn to exit),
and a one-row list as the floor (Dagster's and the project's start-up and one export). It prints
per list: wall time, wall time beyond the floor, the statements that read rows or tokens (from the
run's logs) and the rows read from Snowflake (the exported materializations'
`snowflake_row_count`). Snowflake emulator (its own process) -> S3 on moto.

Dagster's own cost of a run grows with its assets, whatever they do: each export is two steps
(the asset, its checks) and about 18 events in the instance's event log. The benchmark measures
it with no project code: a run of `tables` no-op assets, each with a multi-asset check of three
checks, against a run of one, in process on an instance of their own like the lists. It prints
the ratio beyond the floor, and beyond the floor and that bookkeeping. Figures are printed, not
asserted.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import BIN, connect, emulated_services


def run(command: list[str], env: dict[str, str], home: Path) -> dict[str, Any]:
    """One `data-migration run` with DAGSTER_HOME `home`: its wall time, and from its event log
    the statements that read rows, those that read tokens, and the rows Snowflake returned."""
    from dagster import DagsterEventType, DagsterInstance

    started = time.perf_counter()
    done = subprocess.run(command, env={**env, "DAGSTER_HOME": str(home)}, cwd=home, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    run_id = re.findall(r"\(run ([0-9a-f-]{36})\)", done.stdout)[-1]
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_records_for_run(run_id).records
    messages = [r.event_log_entry.user_message for r in records if r.event_log_entry.dagster_event is None]
    rows = unchanged = 0
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
            if getattr(metadata.get("unchanged"), "value", False):
                unchanged += 1
            else:
                rows += int(getattr(metadata.get("snowflake_row_count"), "value", 0) or 0)
    return {
        "wall": wall,
        "data_statements": sum(m.startswith("Fetching data from Snowflake") for m in messages),
        "token_statements": sum(m.startswith("Reading the change tokens") for m in messages),
        "rows_read": rows,
        "unchanged": unchanged,
    }


_NO_OP_RUN = """
import sys, time
import dagster as dg

def asset(name):
    @dg.asset(name=name)
    def _asset(context):
        context.log.info("nothing to do")

    @dg.multi_asset_check(
        name=name + "_checks", specs=[dg.AssetCheckSpec(c, asset=name) for c in ("readable", "rows", "schema")]
    )
    def _checks(context):
        for c in ("readable", "rows", "schema"):
            yield dg.AssetCheckResult(check_name=c, asset_key=dg.AssetKey(name), passed=True)

    return _asset, _checks

pairs = [asset(f"T{i:02d}") for i in range(int(sys.argv[1]))]
defs = dg.Definitions(
    assets=[a for a, _ in pairs], asset_checks=[c for _, c in pairs],
    jobs=[dg.define_asset_job("all", selection=dg.AssetSelection.all())],
)
with dg.DagsterInstance.get() as instance:
    started = time.perf_counter()
    assert defs.resolve_job_def("all").execute_in_process(instance=instance).success
    print(time.perf_counter() - started)
"""


def dagster_bookkeeping(assets: int, home: Path, rounds: int) -> float:
    """Seconds Dagster itself spends on a run of `assets` no-op assets with their checks beyond
    a run of one (median of `rounds`), on a sqlite instance in `home` as the lists' runs use."""
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"PATH": str(BIN), "DAGSTER_HOME": str(home)}

    def timed(count: int) -> float:
        done = subprocess.run([sys.executable, "-c", _NO_OP_RUN, str(count)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the no-op run failed:\n{done.stderr[-3000:]}")
        return float(done.stdout.strip().splitlines()[-1])

    return statistics.median(timed(assets) - timed(1) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    parser.add_argument("--source", default="ORDERS", choices=["ORDERS", "LINEITEM"], help="the table split")
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--changed", type=int, default=5, help="tables changed before each round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with emulated_services(args.scale) as (env, work, _):
        names = [f"T{index:02d}" for index in range(args.tables)]
        with connect(env) as connection:
            cursor = connection.cursor()
            for index, name in enumerate(names):
                key = "O_ORDERKEY" if args.source == "ORDERS" else "L_ORDERKEY"
                split = f"WHERE {key} % {args.tables} = {index}"
                cursor.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {args.source} {split}")
            cursor.execute("CREATE OR REPLACE TABLE FLOOR_ONE AS SELECT * FROM NATION WHERE N_NATIONKEY = 0")
        lists = {
            "skip_unchanged": [
                {"table": name, "s3_path": f"nightly/skip/{name}.parquet", "skip_unchanged": True} for name in names
            ],
            "every table": [{"table": name, "s3_path": f"nightly/all/{name}.parquet"} for name in names],
            "floor (1 row)": [{"table": "FLOOR_ONE", "s3_path": "nightly/floor.parquet"}],
        }
        # Each list in an instance of its own: the two define the same asset keys (T00 …), and the
        # skip compares with its own list's last materialization.
        commands, homes = {}, {}
        for label, exports in lists.items():
            homes[label] = work / re.sub(r"[^a-z]+", "_", label)
            homes[label].mkdir()
            (homes[label] / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            config = homes[label] / "list.yaml"
            config.write_text(json.dumps({"exports": exports}))
            commands[label] = [str(BIN / "data-migration"), "run", "--config", str(config)]
        for label in ("skip_unchanged", "every table"):
            first = run(commands[label], env, homes[label])
            print(f"first run, {label}: {first['wall']:.1f} s, {first['rows_read']:,} rows read")

        results: dict[str, list[dict[str, Any]]] = {label: [] for label in commands}
        for round_ in range(args.rounds):
            changed = [names[(round_ * args.changed + i) % len(names)] for i in range(args.changed)]
            with connect(env) as connection:
                for name in changed:
                    connection.cursor().execute(f"INSERT INTO {name} SELECT * FROM {name} LIMIT 1")
            for label, command in commands.items():
                results[label].append(run(command, env, homes[label]))
            print(f"round {round_ + 1}: changed {', '.join(changed)}")

        floor = statistics.median(r["wall"] for r in results["floor (1 row)"])
        print(f"\n{args.tables} exports of TPC-H SF{args.scale} {args.source} split {args.tables} ways, {args.changed} "
              f"changed per round, median of {args.rounds} rounds; floor (a one-row list) {floor:.1f} s")  # fmt: skip
        print(f"{'list':<16}{'wall s':>8}{'beyond floor s':>16}{'data stmts':>12}{'token stmts':>13}"
              f"{'rows read':>12}{'unchanged':>11}")  # fmt: skip
        beyond: dict[str, float] = {}
        for label in ("skip_unchanged", "every table"):
            rounds = results[label]
            wall = statistics.median(r["wall"] for r in rounds)
            beyond[label] = wall - floor
            last = rounds[-1]
            print(f"{label:<16}{wall:>8.1f}{wall - floor:>16.1f}{last['data_statements']:>12}"
                  f"{last['token_statements']:>13}{last['rows_read']:>12,}{last['unchanged']:>11}")  # fmt: skip
        ratio = beyond["skip_unchanged"] / beyond["every table"] if beyond["every table"] > 0 else float("nan")
        print(f"\nskip_unchanged beyond the floor: {ratio:.2f} of the unconditional run's")
        bookkeeping = dagster_bookkeeping(args.tables, work / "no_op", args.rounds)
        print(f"Dagster's bookkeeping of {args.tables} assets with 3 checks each (no-op, beyond a run of one): "
              f"{bookkeeping:.1f} s, {bookkeeping / (args.tables - 1) * 1000:.0f} ms an asset")  # fmt: skip
        net = {label: value - bookkeeping for label, value in beyond.items()}
        print(f"beyond the floor and that bookkeeping: skip_unchanged {net['skip_unchanged']:.1f} s, every table "
              f"{net['every table']:.1f} s: {net['skip_unchanged'] / net['every table']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
