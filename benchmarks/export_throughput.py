"""Throughput and peak memory of one large export, through the project's own IO manager.

    .venv/bin/python benchmarks/export_throughput.py [--scale 1] [--table lineitem]

The source is a chunked stream of Arrow batches read from TPC-H Parquet (tpchgen-cli), standing in
for Snowflake's result chunks: fakesnow returns a whole result as one batch, so the emulator
cannot show streaming. The stream goes through ExportIOManager.handle_output (format writer +
object store), to the local-folder store and to S3 on a moto server in a separate process. The
"declared" rows are the same stream with the schema the project takes from Snowflake's declared
types (TPC-H declares its keys NUMBER(38,0): decimal128(38,0), each chunk cast to it). The
"naive" rows do what the old pipeline did: the whole result as one DataFrame, one in-memory file,
one put_object. The "duckdb" rows are the ceiling: DuckDB's native COPY ... TO from the same
Parquet to local disk, in the same format.

Each case runs in a fresh process, so "peak RSS" is that case's own high-water mark. "CPU s" is
the case's own CPU time on all its threads (more than its wall time when it uses both cores);
"moto CPU s" is the moto server's CPU time during the case: on this 2-core machine the emulated
S3 competes with the export for the same cores. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BUCKET = "bench-bucket"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(args: argparse.Namespace) -> dict:
    import pyarrow.parquet as pq

    source = pq.ParquetFile(args.parquet)
    rows = source.metadata.num_rows
    # Imports happen before the clock starts, as they do when a run's process starts.
    if args.approach in ("streaming", "declared"):
        import dagster  # noqa: F401

        import data_migration.exports.io_managers  # noqa: F401
    elif args.approach == "duckdb":
        import duckdb  # noqa: F401
    else:
        import boto3  # noqa: F401
        import pandas  # noqa: F401
    baseline = peak_rss_mb()
    cpu_before = _own_cpu_seconds()
    started = time.perf_counter()
    if args.approach in ("streaming", "declared"):
        written = _streaming(args, source, declared=args.approach == "declared")
    elif args.approach == "duckdb":
        written = _duckdb(args)
    else:
        written = _naive(args, source)
    elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": elapsed,
        "cpu_seconds": _own_cpu_seconds() - cpu_before,
        "bytes": written,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": baseline,
    }


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _store(args: argparse.Namespace):
    from dagster_aws.s3 import S3Resource

    from data_migration.files.storage import LocalObjectStore, S3ObjectStore

    if args.destination == "local":
        return LocalObjectStore(root=args.workdir)
    return S3ObjectStore(
        s3=S3Resource(
            endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        ),
        bucket=BUCKET,
    )


def _streaming(args: argparse.Namespace, source, declared: bool = False) -> int:
    """The export through the project's IO manager. `declared`: the schema the project now takes
    from Snowflake's declared column types (TPC-H declares its keys NUMBER(38,0), so they are
    written as decimal128(38,0), each chunk cast to it); otherwise the chunks' own types."""
    import dagster as dg
    import pyarrow as pa

    from data_migration.config import parse_exports
    from data_migration.exports.io_managers import ExportIOManager
    from data_migration.exports.runs import FileExport
    from data_migration.snowflake.queries import Column, ExportStream, conform, declared_schema

    # As the connector would deliver it: plain strings (tpchgen writes string_view).
    schema = pa.schema(
        [pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type) for f in source.schema_arrow]
    )
    if declared:
        schema = declared_schema([_declared_as_snowflake(field) for field in schema])
    stream = ExportStream(
        schema=schema,
        columns=[Column(f.name, str(f.type)) for f in schema],
        query_id="benchmark",
        expected_rows=source.metadata.num_rows,
        _batches=(conform(b, schema) for b in _chunks(source, args.batch_rows)),
    )
    manager = ExportIOManager(store=_store(args), file_type=args.file_type)
    key = f"exports/bench/data.{args.file_type}"
    (spec,) = parse_exports(
        {"exports": [{"table": "BENCH", "s3_path": key, "file_type": args.file_type, "query": "SELECT 1"}]},
        "benchmark.yaml",
    ).exports
    context = dg.build_output_context(asset_key="BENCH")
    manager.handle_output(context, FileExport(spec=spec, run=stream))
    return context.get_logged_metadata()["size_bytes"].value


def _declared_as_snowflake(field):
    """The cursor.description entry Snowflake gives a TPC-H column of this Arrow type."""
    from types import SimpleNamespace

    import pyarrow as pa

    if pa.types.is_integer(field.type):
        return SimpleNamespace(name=field.name, type_code=0, precision=38, scale=0)  # NUMBER(38,0)
    if pa.types.is_decimal(field.type):
        return SimpleNamespace(name=field.name, type_code=0, precision=field.type.precision, scale=field.type.scale)
    if pa.types.is_date(field.type):
        return SimpleNamespace(name=field.name, type_code=3, precision=None, scale=None)
    return SimpleNamespace(name=field.name, type_code=2, precision=None, scale=None)  # VARCHAR


def _chunks(source, batch_rows: int):
    """One row group at a time, like Snowflake's result chunks: ParquetFile.iter_batches over the
    whole file reads ahead and grows with the file (74 MB at SF0.1, 287 MB at SF1 on its own)."""
    for index in range(source.metadata.num_row_groups):
        yield from source.read_row_group(index).to_batches(max_chunksize=batch_rows)


def _naive(args: argparse.Namespace, source) -> int:
    frame = source.read().to_pandas()  # fetch_pandas_all(): every row in memory at once
    buffer = io.BytesIO()
    if args.file_type == "parquet":
        frame.to_parquet(buffer, index=False)
    elif args.file_type == "csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_json(buffer, orient="records", lines=True)
    data = buffer.getvalue()
    if args.destination == "local":
        Path(args.workdir, "naive.out").write_bytes(data)
    else:
        import boto3

        boto3.client(
            "s3", endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        ).put_object(Bucket=BUCKET, Key="naive.out", Body=data)
    return len(data)


def _duckdb(args: argparse.Namespace) -> int:
    """The ceiling: DuckDB's native COPY from the same Parquet to local disk, all cores."""
    import duckdb

    out = Path(args.workdir, f"duckdb.{args.file_type}")
    options = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER", "json": "FORMAT json"}[args.file_type]
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{args.parquet}')) TO '{out}' ({options})")
    return out.stat().st_size


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


MOTO_PIDS: dict[str, int] = {}  # endpoint -> the moto server's process id, to charge its CPU time


@contextlib.contextmanager
def moto_server():
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    MOTO_PIDS[endpoint] = process.pid
    try:
        import boto3
        import botocore.exceptions

        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        for _ in range(200):
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except botocore.exceptions.EndpointConnectionError:
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="1")
    parser.add_argument("--table", default="lineitem")
    parser.add_argument("--formats", default="parquet,csv,json")
    parser.add_argument("--destinations", default="local,s3")
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True)
    # "declared": the stream with the schema of Snowflake's declared types (keys NUMBER(38,0)).
    parser.add_argument("--declared", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--duckdb", action=argparse.BooleanOptionalAction, default=True)
    # internal: one case in a child process
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--approach")
    parser.add_argument("--file-type")
    parser.add_argument("--destination")
    parser.add_argument("--parquet")
    parser.add_argument("--endpoint")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return

    from data_migration.local.emulator import ensure_tpch

    data = ensure_tpch(ROOT / ".local", args.scale)
    parquet = data / f"{args.table}.parquet"
    print(f"{args.table.upper()} at TPC-H SF{args.scale}: {parquet} ({parquet.stat().st_size / 1e6:.0f} MB Parquet)")
    print(
        f"{'approach':<10} {'format':<8} {'to':<6} {'rows':>10} {'s':>7} {'rows/s':>10} {'MB/s':>7} "
        f"{'out MB':>8} {'peak RSS MB':>12} {'(imports)':>9} {'CPU s':>6} {'moto CPU s':>10}"
    )
    approaches = ["streaming", *(["declared"] if args.declared else [])]
    approaches += (["naive"] if args.naive else []) + (["duckdb"] if args.duckdb else [])
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as workdir:
        for destination in args.destinations.split(","):
            for file_type in args.formats.split(","):
                for approach in approaches:
                    if approach == "duckdb" and destination != "local":
                        continue  # DuckDB's COPY is the local-disk ceiling only
                    command = [
                        sys.executable,
                        __file__,
                        "--case",
                        "--approach",
                        approach,
                        "--file-type",
                        file_type,
                        "--destination",
                        destination,
                        "--parquet",
                        str(parquet),
                        "--endpoint",
                        endpoint,
                        "--workdir",
                        workdir,
                        "--batch-rows",
                        str(args.batch_rows),
                    ]
                    moto_before = cpu_seconds(MOTO_PIDS[endpoint])
                    done = subprocess.run(command, capture_output=True, text=True)
                    moto_cpu = cpu_seconds(MOTO_PIDS[endpoint]) - moto_before
                    if done.returncode != 0:
                        last_line = done.stderr.strip().splitlines()[-1]
                        print(f"{approach:<10} {file_type:<8} {destination:<6} failed: {last_line}")
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    print(
                        f"{approach:<10} {file_type:<8} {destination:<6} {r['rows']:>10} {r['seconds']:>7.1f} "
                        f"{r['rows'] / r['seconds']:>10,.0f} {r['bytes'] / 1e6 / r['seconds']:>7.1f} "
                        f"{r['bytes'] / 1e6:>8.0f} {r['peak_rss_mb']:>12.0f} {r['rss_after_imports_mb']:>9.0f} "
                        f"{r['cpu_seconds']:>6.1f} {moto_cpu if destination == 's3' else float('nan'):>10.1f}"
                    )


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_HOME", tempfile.mkdtemp())
    main()
