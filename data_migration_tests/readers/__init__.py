"""Readers no one here wrote, for tests that check the Apache Iceberg and Delta Lake tables on S3.

DuckDB 1.5.5 with its own iceberg, avro, httpfs and delta extensions (PyPI wheels that carry the
binaries, so they load offline), and chDB 4.4.0 (ClickHouse 26.9) as a second reader, run in a
virtualenv of their own: the project's venv needs DuckDB 2.0 (fakesnow). Each query runs in a
subprocess in that venv (reader_script.py) and comes back as a pyarrow Table with the engine's own
Arrow types, plus the engine's own type names, so a test can compare cell by cell and assert what
the reader saw.

The API (everything keyword-only after the endpoint; `endpoint` is moto's URL, e.g.
"http://127.0.0.1:PORT"; `engine` is "duckdb" (the default) or "chdb"):

    read_iceberg(location, endpoint, *, snapshot=None, columns="*", where=None, order_by=None,
                 engine="duckdb", options=None, **query_args) -> ReadResult
        `location` is a metadata file (s3://b/t/metadata/00002-<uuid>.metadata.json: the table as
        that commit left it) or the table folder (s3://b/t). Of a folder, DuckDB reads the
        metadata file its metadata/version-hint.text names if there is one, else the newest by
        the version number in the file names (unsafe_enable_version_guessing, turned on here);
        chDB reads the newest and ignores a hint. `snapshot`: a snapshot id (int) or a time
        (datetime, naive means UTC: the snapshot current then) of that metadata.
    read_delta(location, endpoint, *, version=None, columns="*", where=None, order_by=None,
               engine="duckdb", options=None, **query_args) -> ReadResult
        `location` is the table folder (s3://b/t); `version` a table version (time travel).
    query(sql, endpoint=None, *, tables=None, engine="duckdb", setup=(), settings=None,
          key_id="testing", secret="testing", region="us-east-1", timeout=180) -> ReadResult
        Any one query. `tables` maps view names to iceberg_table(...) / delta_table(...), so that
        e.g. TPC-H Q1 runs as written: query(Q1, endpoint, tables={"lineitem":
        iceberg_table("s3://b/lineitem")}). `setup` statements run first, `settings` are SET.
    iceberg_table(location, *, snapshot=None, options=None) -> LakeTable
    delta_table(location, *, version=None, options=None) -> LakeTable
        A table for query(tables=...), with read_iceberg's and read_delta's meanings.
    ReadResult(table: pa.Table, types: dict[str, str], engine: str, sql: str,
               versions: dict[str, str]); .rows() -> list[dict]
        `table` has the engine's Arrow types; `types` maps each column, in order, to the engine's
        own type name (DuckDB's DESCRIBE, ClickHouse's DESCRIBE); `versions` the packages that
        answered (duckdb, pyarrow; chdb).
    ReaderError(message, engine=, sql=): the engine refused the query (its text is the message).
    ensure_reader_venv(venv=None) -> Path (its python): called by query(); call it in a fixture to
        pay the one-off install outside a test's own time.

`options` are further named parameters of DuckDB's iceberg_scan / delta_scan (allow_moved_paths,
...); chDB takes none. What each reader gives back for each type, measured, is asserted in
test_readers.py (DUCKDB_TYPES, CHDB_*_TYPES) and summed up here. DuckDB 1.5.5 returns the Arrow
types the table was written with: Iceberg `timestamp` and Delta `timestamp_ntz` as timestamp[us]
(TIMESTAMP), Iceberg `timestamptz` and Delta `timestamp` as timestamp[us, tz=UTC] (TIMESTAMP WITH
TIME ZONE, in the session's time zone, which is UTC here), decimal(p, s) as decimal128(p, s),
Iceberg `time` as time64[us] (TIME), date as date32 (DATE), binary as binary (BLOB). chDB returns
strings as binary, a naive timestamp marked UTC, Iceberg `time` as Int64 whole seconds.

S3: key/secret/region are given here (moto's "testing" by default) with path-style, plain-http
URLs; nothing is read from the AWS_* environment, ~/.duckdb or ~/.aws. DuckDB gets one S3 secret
(reader_script.py) with ENDPOINT without the scheme, URL_STYLE 'path' and USE_SSL false: all three
are needed (test_duckdb_delta_needs_use_ssl_false_and_path_style). chDB gets http URLs with the
endpoint in them and the key and secret as table-function arguments.

The reader venv: `.local/venv-readers` in the checkout (ignored by git and ruff, as all of
`.local/` is), or the path in $DATA_MIGRATION_READER_VENV. `ensure_reader_venv()` creates it with
`python -m venv` and installs READER_PACKAGES from the package index with the project venv's own
pip (`pip --python`, so the same pip configuration and index apply; binary wheels only). It is
reused while its stamp names the same packages and Python; an exclusive file lock beside it lets
parallel pytest processes (xdist, two sessions) race safely: one installs, the others wait and
find the stamp. From scratch it downloads and installs 1.1 GB (chdb: 0.8 GB): 15 s measured with
no pip cache on a fast link; the stamp records how long it took.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.ipc

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_ENV = "DATA_MIGRATION_READER_VENV"
DEFAULT_VENV = REPO_ROOT / ".local" / "venv-readers"
SCRIPT = Path(__file__).with_name("reader_script.py")
METADATA_KEY = b"data_migration.reader"  # as in reader_script.py
# Exact pins: the tests assert the types these releases read. Their own dependencies (numpy,
# pandas, tzdata, python-dateutil for chdb) are left to pip.
READER_PACKAGES: tuple[str, ...] = (
    "duckdb==1.5.5",
    "duckdb-extensions==1.5.5",
    "duckdb-extension-httpfs==1.5.5",
    "duckdb-extension-avro==1.5.5",
    "duckdb-extension-iceberg==1.5.5",
    "duckdb-extension-delta==1.5.5",
    "pyarrow==26.0.1",
    "chdb==4.4.0",
    "chdb-core==26.9.0",
)
STAMP = ".data-migration-readers.json"
PIP_TIMEOUT = 1800  # seconds: 1.1 GB of wheels on a slow link
Engine = Literal["duckdb", "chdb"]
Options = Mapping[str, str | int | bool]


class ReaderError(RuntimeError):
    """The reader refused the query (its own error text is the message)."""

    def __init__(self, message: str, *, engine: str, sql: str) -> None:
        super().__init__(message)
        self.engine = engine
        self.sql = sql


@dataclass(frozen=True)
class ReadResult:
    """A reader's answer: `table` has the engine's Arrow types, `types` its own type names."""

    table: pa.Table
    types: dict[str, str]  # column -> DuckDB's (or ClickHouse's) type name, in column order
    engine: str
    sql: str
    versions: dict[str, str] = field(default_factory=dict)  # package -> version that answered

    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_pylist()


@dataclass(frozen=True)
class LakeTable:
    """An Iceberg or Delta table for query(tables=...): see iceberg_table() and delta_table()."""

    format: Literal["iceberg", "delta"]
    location: str
    at: int | dt.datetime | None = None  # Iceberg: snapshot id or time; Delta: version
    options: Mapping[str, str | int | bool] = field(default_factory=dict)


def iceberg_table(
    location: str, *, snapshot: int | dt.datetime | None = None, options: Options | None = None
) -> LakeTable:
    """An Iceberg table: a metadata file or the table folder, at `snapshot` (id or time) if given."""
    if snapshot is not None and not isinstance(snapshot, int | dt.datetime):
        raise TypeError(f"snapshot is a snapshot id (int) or a datetime, not {snapshot!r}")
    return LakeTable("iceberg", location, snapshot, dict(options or {}))


def delta_table(location: str, *, version: int | None = None, options: Options | None = None) -> LakeTable:
    """A Delta table (its folder), at `version` if given."""
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise TypeError(f"version is an int, not {version!r}")
    return LakeTable("delta", location, version, dict(options or {}))


# --- the venv ---------------------------------------------------------------------------------


def reader_venv() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _wanted() -> dict[str, Any]:
    return {"packages": list(READER_PACKAGES), "base_python": sys.base_prefix, "python": sys.version.split()[0]}


def _stamp_matches(venv: Path) -> bool:
    try:
        stamp = json.loads((venv / STAMP).read_text())
        return _python(venv).exists() and stamp.get("wanted") == _wanted()
    except (OSError, ValueError, AttributeError):
        return False


_PROBE = """
import importlib.metadata as m, json, sys
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"base_python": sys.base_prefix, "versions": {n: version(n) for n in json.loads(sys.argv[1])}}))
"""


def _probe(python: Path) -> dict[str, Any] | None:
    """The venv's base Python and the installed versions of READER_PACKAGES; None if it does not run."""
    names = [spec.split("==")[0] for spec in READER_PACKAGES]
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE, json.dumps(names)], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)


def _installed(probe: dict[str, Any] | None) -> bool:
    pins = dict(spec.split("==") for spec in READER_PACKAGES)
    return probe is not None and probe["versions"] == pins


@contextlib.contextmanager
def _locked(venv: Path) -> Iterator[None]:
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_reader_venv(venv: Path | None = None) -> Path:
    """Make sure the reader venv exists with READER_PACKAGES; return its python.

    Reused as it is while its stamp matches (no subprocess then). Otherwise, under an exclusive
    lock (a second process waits, then finds the stamp): a venv whose python does not run, or
    runs on another base Python, is removed; a missing one is created; the pinned wheels are
    installed (binaries only) by this interpreter's pip with `--python` (or, if this interpreter
    has no pip, by the reader venv's own); then the installed versions are checked and stamped."""
    venv = Path(venv) if venv is not None else reader_venv()
    if _stamp_matches(venv):
        return _python(venv)
    with _locked(venv):
        if _stamp_matches(venv):
            return _python(venv)
        started = time.monotonic()
        python = _python(venv)
        (venv / STAMP).unlink(missing_ok=True)
        probe = _probe(python) if python.exists() else None
        if venv.exists() and (probe is None or probe["base_python"] != sys.base_prefix):
            shutil.rmtree(venv)
            probe = None
        own_pip = importlib.util.find_spec("pip") is not None
        if not venv.exists():
            _run([sys.executable, "-m", "venv", *(["--without-pip"] if own_pip else []), str(venv)])
        if not _installed(probe):
            pip = [sys.executable, "-m", "pip", "--python", str(python)] if own_pip else [str(python), "-m", "pip"]
            _run([*pip, "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", *READER_PACKAGES])
            probe = _probe(python)
            if not _installed(probe):
                raise RuntimeError(
                    f"the reader venv {venv} has {probe and probe['versions']} after pip install of {READER_PACKAGES}"
                )
        stamp = venv / f"{STAMP}.tmp"
        stamp.write_text(
            json.dumps(
                {
                    "wanted": _wanted(),
                    "stamped_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "seconds": round(time.monotonic() - started, 1),  # creating, installing, checking
                }
            )
        )
        stamp.replace(venv / STAMP)
    return python


def _run(command: Sequence[str]) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=PIP_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


# --- queries ----------------------------------------------------------------------------------


def _child_env(home: str) -> dict[str, str]:
    # No AWS_* (credentials, endpoint, profile) and no Python settings of the parent's reach the
    # reader; HOME is a scratch folder, so no ~/.duckdb (secrets, extensions) or ~/.aws is read.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "PYTHON", "DUCKDB_")) and name not in ("VIRTUAL_ENV", "HOME")
    }
    return {**env, "HOME": home, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class _S3:
    endpoint: str | None
    key_id: str
    secret: str


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _utc(value: dt.datetime) -> dt.datetime:
    """Naive means UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _option(value: str | int | bool | dt.datetime) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP {_literal(_utc(value).replace(tzinfo=None).isoformat(sep=' '))}"
    return _literal(value)


def _http_url(s3_uri: str, s3: _S3) -> str:
    if not s3_uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {s3_uri!r}")
    if not s3.endpoint:
        raise ValueError("chdb needs the S3 endpoint")
    return f"{s3.endpoint.rstrip('/')}/{s3_uri.removeprefix('s3://').strip('/')}/"


def _is_metadata_file(location: str) -> bool:
    return location.endswith((".metadata.json", ".metadata.json.gz"))


def _render(table: LakeTable, engine: Engine, s3: _S3) -> tuple[str, dict[str, str | int | bool]]:
    """The engine's table expression for `table`, and the session settings it needs."""
    if engine == "duckdb":
        location, settings = table.location, {}
        if table.format == "iceberg" and not _is_metadata_file(location):
            # Measured: with a trailing slash, the guess finds nothing; a version-hint.text, when
            # there is one, still wins over the guess.
            location = location.rstrip("/")
            settings["unsafe_enable_version_guessing"] = True
        args = [_literal(location)]
        if table.format == "iceberg" and isinstance(table.at, int):
            args.append(f"snapshot_from_id => {table.at}")
        elif table.format == "iceberg" and isinstance(table.at, dt.datetime):
            args.append(f"snapshot_from_timestamp => {_option(table.at)}")
        elif table.format == "delta" and table.at is not None:
            args.append(f"version => {int(table.at)}")
        args += [f"{name} => {_option(value)}" for name, value in table.options.items()]
        function = "iceberg_scan" if table.format == "iceberg" else "delta_scan"
        return f"{function}({', '.join(args)})", settings
    if table.options:
        raise ValueError(f"chdb takes no options: {dict(table.options)}")
    credentials = f"{_literal(s3.key_id)}, {_literal(s3.secret)}"
    at: dict[str, int] = {}
    if table.format == "iceberg":
        folder, storage = table.location, ""
        if _is_metadata_file(folder):
            folder, name = folder.rsplit("/metadata/", 1)
            storage = f", SETTINGS iceberg_metadata_file_path = {_literal('metadata/' + name)}"
        source = f"icebergS3({_literal(_http_url(folder, s3))}, {credentials}{storage})"
        if isinstance(table.at, int):
            at["iceberg_snapshot_id"] = table.at
        elif isinstance(table.at, dt.datetime):
            at["iceberg_timestamp_ms"] = round(_utc(table.at).timestamp() * 1000)
    else:
        source = f"deltaLake({_literal(_http_url(table.location, s3))}, {credentials})"
        if table.at is not None:
            at["delta_lake_snapshot_version"] = int(table.at)
    if not at:
        return source, {}
    # The snapshot is a query setting: in a subquery of its own, it is this table's alone.
    return f"(SELECT * FROM {source} SETTINGS {', '.join(f'{k} = {v}' for k, v in at.items())})", {}


def query(
    sql: str,
    endpoint: str | None = None,
    *,
    tables: Mapping[str, LakeTable] | None = None,
    engine: Engine = "duckdb",
    setup: Sequence[str] = (),
    settings: Options | None = None,
    key_id: str = "testing",
    secret: str = "testing",
    region: str = "us-east-1",
    timeout: float = 180,
) -> ReadResult:
    """Run `sql` (one query) in the reader venv; see the module docstring.

    duckdb: an S3 secret for `endpoint` is created first, the session's TimeZone is UTC. chdb: the
    session_timezone is UTC, strings come back as Arrow binary. For both: `settings` are SET, then
    `setup` runs, then the views of `tables` are created. Raises ReaderError when the engine
    refuses the query, RuntimeError when the reader itself fails."""
    python = ensure_reader_venv()
    s3 = _S3(endpoint, key_id, secret)
    all_settings: dict[str, str | int | bool] = {}
    views = []
    for name, table in (tables or {}).items():
        source, needed = _render(table, engine, s3)
        all_settings.update(needed)
        views.append(f'CREATE VIEW "{name}" AS SELECT * FROM {source}')
    all_settings.update(settings or {})
    with tempfile.TemporaryDirectory(prefix="data-migration-reader-") as scratch:
        out = Path(scratch) / "answer.arrow"
        request = {
            "engine": engine,
            "sql": sql,
            "setup": [*setup, *views],
            "settings": all_settings,
            "s3": {"endpoint": endpoint, "key_id": key_id, "secret": secret, "region": region} if endpoint else None,
            "out": str(out),
        }
        done = subprocess.run(
            [str(python), str(SCRIPT)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_child_env(scratch),
            cwd=scratch,
        )
        if done.returncode == 3:
            refusal = json.loads(out.with_name(out.name + ".error.json").read_text())
            raise ReaderError(refusal["message"], engine=engine, sql=sql)
        if done.returncode != 0:
            raise RuntimeError(f"the {engine} reader failed ({done.returncode}) on {sql!r}:\n{done.stderr}")
        table = pyarrow.ipc.open_file(pa.py_buffer(out.read_bytes())).read_all()
    schema_metadata = dict(table.schema.metadata or {})
    answer = json.loads(schema_metadata.pop(METADATA_KEY))
    return ReadResult(
        table=table.replace_schema_metadata(schema_metadata or None),
        types=dict(answer["types"]),
        engine=engine,
        sql=sql,
        versions=answer["versions"],
    )


def _read(
    table: LakeTable,
    endpoint: str,
    columns: str,
    where: str | None,
    order_by: str | None,
    engine: Engine,
    query_args: dict[str, Any],
) -> ReadResult:
    s3 = _S3(endpoint, query_args.get("key_id", "testing"), query_args.get("secret", "testing"))
    source, settings = _render(table, engine, s3)
    sql = (
        f"SELECT {columns} FROM {source}"
        + (f" WHERE {where}" if where else "")
        + (f" ORDER BY {order_by}" if order_by else "")
    )
    settings.update(query_args.pop("settings", None) or {})
    return query(sql, endpoint, engine=engine, settings=settings, **query_args)


def read_iceberg(
    location: str,
    endpoint: str,
    *,
    snapshot: int | dt.datetime | None = None,
    columns: str = "*",
    where: str | None = None,
    order_by: str | None = None,
    engine: Engine = "duckdb",
    options: Options | None = None,
    **query_args: Any,
) -> ReadResult:
    """`SELECT columns FROM <the Iceberg table> [WHERE where] [ORDER BY order_by]`.

    `location`: a metadata file or the table folder; `snapshot`: an id or a time (naive is UTC);
    see the module docstring. query_args go to query() (setup, settings, key_id, secret, ...)."""
    table = iceberg_table(location, snapshot=snapshot, options=options)
    return _read(table, endpoint, columns, where, order_by, engine, query_args)


def read_delta(
    location: str,
    endpoint: str,
    *,
    version: int | None = None,
    columns: str = "*",
    where: str | None = None,
    order_by: str | None = None,
    engine: Engine = "duckdb",
    options: Options | None = None,
    **query_args: Any,
) -> ReadResult:
    """`SELECT columns FROM <the Delta table> [WHERE where] [ORDER BY order_by]`, at `version` if
    given. query_args go to query()."""
    table = delta_table(location, version=version, options=options)
    return _read(table, endpoint, columns, where, order_by, engine, query_args)


__all__ = [
    "DEFAULT_VENV",
    "READER_PACKAGES",
    "VENV_ENV",
    "LakeTable",
    "ReadResult",
    "ReaderError",
    "delta_table",
    "ensure_reader_venv",
    "iceberg_table",
    "query",
    "read_delta",
    "read_iceberg",
    "reader_venv",
]
