"""The embedded Snowflake: fakesnow's HTTP server in this process, holding TPC-H sample data.

The real snowflake-connector-python talks to it over HTTP on 127.0.0.1, so exports take exactly
the code path they take against Snowflake; only the connection's host, port and protocol differ.

TPC-H tables are generated once by tpchgen-cli as Parquet into the local folder and kept there
between runs; each process that needs the emulator loads them into its own in-memory database
(a fraction of a second at the default scale). A shared on-disk database would let only one
process open it at a time, and Dagster runs exports in several processes at once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pyarrow.parquet as pq

from data_migration.local import changes, stages
from data_migration.local.server import EmulatorApp

DATABASE = "SNOWFLAKE_SAMPLE_DATA"
SCHEMA = "TPCH_SF1"
# The named external stage the embedded default unloads to (over its bucket folder).
EXPORT_STAGE = "DATA_MIGRATION_EXPORTS"
APP: EmulatorApp | None = None  # the running emulator's app, once started (a benchmark adds a stage to it)
TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
# The newest O_ORDERDATE in TPC-H data. Date columns are shifted so that it falls on the day the
# emulator starts: queries over "the last 7 days" (RECENT_ORDERS) then find rows.
TPCH_LAST_ORDER_DATE = dt.date(1998, 8, 2)

log = logging.getLogger(__name__)

_lock = threading.Lock()
_port: int | None = None


class EmulatorError(RuntimeError):
    pass


def tpch_dir(local_dir: Path, scale: str) -> Path:
    return Path(local_dir) / "tpch" / f"sf{scale}"


def ensure_tpch(local_dir: Path, scale: str) -> Path:
    """Generate the TPC-H Parquet files at `scale` unless they are already there."""
    target = tpch_dir(local_dir, scale)
    if all((target / f"{t}.parquet").is_file() for t in TABLES):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".sf{scale}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another process may be generating the same data
        if all((target / f"{t}.parquet").is_file() for t in TABLES):
            return target
        work = Path(tempfile.mkdtemp(prefix=f".sf{scale}-", dir=target.parent))
        try:
            command = [_tpchgen(), "parquet", "-s", scale, f"--output-dir={work}"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise EmulatorError(
                    f"tpchgen-cli failed ({done.returncode}) generating TPC-H SF{scale}: {done.stderr.strip()[-2000:]}"
                )
            shutil.rmtree(target, ignore_errors=True)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _tpchgen() -> str:
    beside = Path(sys.executable).parent / "tpchgen-cli"
    found = str(beside) if beside.is_file() else shutil.which("tpchgen-cli")
    if not found:
        raise EmulatorError(
            "tpchgen-cli is not installed; the embedded default needs it: "
            "pip install -e '.[local]' (the README's commands do this)"
        )
    return found


def bucket_dir(local_dir: Path) -> Path:
    """The folder standing in for the bucket on the embedded default."""
    return Path(local_dir) / "bucket"


def ensure_started(local_dir: Path, scale: str) -> int:
    """Start the emulator in this process (once) and return its port. Its one named stage,
    EXPORT_STAGE, is over the embedded default's bucket folder (for method: unload)."""
    global _port
    with _lock:
        if _port is None:
            data = ensure_tpch(local_dir, scale)
            _port = _start_server(bucket_dir(local_dir))
            seed_tpch(data, today=dt.date.today())
        return _port


def _start_server(bucket: Path) -> int:
    try:
        import uvicorn

        # Imports fakesnow's server.
        app = EmulatorApp(stages={EXPORT_STAGE: stages.folder_stage(EXPORT_STAGE, bucket)})
        global APP
        APP = app
    except ImportError as error:
        raise EmulatorError(f"the embedded default needs fakesnow ({error}): pip install -e '.[local]'") from error
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="embedded snowflake", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise EmulatorError(f"the embedded Snowflake emulator did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    # fakesnow logs every login at INFO and warns about a copy on every result; keep run logs
    # about the export.
    logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
    # sqlglot warns when its DuckDB dialect drops a Snowflake property (TRANSIENT); that is the
    # emulator's translation, not the run's business.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)
    # DuckDB reports objects still alive at interpreter exit as leaks; stop the server and close
    # the database first.
    atexit.register(_stop, server, thread)
    return port


def _stop(server: object, thread: threading.Thread) -> None:
    import fakesnow.server

    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=5)
    fakesnow.server.sessions.clear()
    fakesnow.server.shared_fs.duck_conn.close()


def seed_tpch(data: Path, today: dt.date) -> None:
    """Load the TPC-H Parquet files into the running emulator, upper-case names, dates shifted."""
    import fakesnow.server

    shift = (today - TPCH_LAST_ORDER_DATE).days
    # Connecting creates the database and schema in fakesnow's catalog.
    fakesnow.server.shared_fs.connect(DATABASE, SCHEMA).close()
    duck = fakesnow.server.shared_fs.duck_conn
    for table in TABLES:
        path = data / f"{table}.parquet"
        columns = []
        for field in pq.read_schema(path):
            name = field.name
            expression = f'"{name}" + {shift}' if str(field.type).startswith("date") else f'"{name}"'
            columns.append(f'{expression} AS "{name.upper()}"')
        literal = "'" + str(path).replace("'", "''") + "'"
        duck.execute(
            f'CREATE OR REPLACE TABLE {DATABASE}.{SCHEMA}."{table.upper()}" AS '
            f"SELECT {', '.join(columns)} FROM read_parquet({literal})"
        )
        # The same in every process that loads these files today: a change token moves when the
        # files are generated again or the dates shift (a new day), not per process.
        midnight = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)
        changes.baseline(duck, DATABASE, SCHEMA, table.upper(), max(path.stat().st_mtime_ns, _ns(midnight)))


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 10**9
