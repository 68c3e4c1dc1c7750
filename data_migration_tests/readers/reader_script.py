"""Runs one query in the reader venv (see __init__.py) and writes its answer as an Arrow IPC file.

Started as `<reader venv>/bin/python reader_script.py`, with a JSON request on standard input:
    {"engine": "duckdb" | "chdb", "sql": "...", "setup": ["...", ...], "settings": {"name": value},
     "s3": {"endpoint": "http://127.0.0.1:PORT", "key_id": "...", "secret": "...", "region": "..."} | null,
     "out": "/path/to/answer.arrow"}
It writes `out` (an Arrow IPC file whose schema metadata, under `data_migration.reader`, holds the
engine's own column types in order), or `out + ".error.json"` ({"type": ..., "message": ...}) and
exits with 3 if the engine refused the query.

It imports only the standard library and the reader venv's packages (duckdb and its extension
wheels, pyarrow, chdb), never the project or the project's venv.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
import traceback
from typing import Any
from urllib.parse import urlsplit

METADATA_KEY = b"data_migration.reader"
# Loaded by path from their PyPI wheels, in this order (iceberg needs avro and httpfs); nothing is
# installed into ~/.duckdb and nothing is fetched: DuckDB's autoinstall and autoload are off.
DUCKDB_EXTENSIONS = ("httpfs", "avro", "iceberg", "delta")


class Refused(Exception):
    """The engine refused the request (as opposed to this script failing)."""


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def endpoint_parts(endpoint: str) -> tuple[str, bool]:
    """'http://127.0.0.1:5000' -> ('127.0.0.1:5000', False): DuckDB's ENDPOINT takes no scheme."""
    if "://" not in endpoint:
        return endpoint.rstrip("/"), True
    parts = urlsplit(endpoint)
    return parts.netloc, parts.scheme == "https"


def duckdb_answer(request: dict[str, Any]) -> tuple[Any, list[list[str]]]:
    import duckdb

    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_persistent_secrets": False,
        }
    )
    for name in DUCKDB_EXTENSIONS:
        module = importlib.import_module(f"duckdb_extension_{name}")
        folder = pathlib.Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        con.execute(f"LOAD {literal(str(folder / f'{name}.duckdb_extension'))}")
    # TIMESTAMPTZ reaches Arrow in the session's time zone: UTC, whatever the machine's.
    con.execute("SET TimeZone = 'UTC'")
    s3 = request.get("s3")
    if s3:
        host, use_ssl = endpoint_parts(s3["endpoint"])
        # Both of DuckDB's S3 clients read this secret: httpfs (the Parquet data files) and the
        # delta extension's own object store (the Delta log, via delta-kernel-rs). ENDPOINT takes no
        # scheme: 'http://...' breaks httpfs ("http://http://..."); USE_SSL false is what makes
        # the Delta log reads plain http (without it, the kernel retries https 10 times and
        # fails); URL_STYLE 'path' is needed by httpfs (else bucket.127.0.0.1 is resolved).
        con.execute(
            "CREATE SECRET reader_s3 (TYPE s3, PROVIDER config, "
            f"KEY_ID {literal(s3['key_id'])}, SECRET {literal(s3['secret'])}, REGION {literal(s3['region'])}, "
            f"ENDPOINT {literal(host)}, URL_STYLE 'path', USE_SSL {'true' if use_ssl else 'false'})"
        )
    for name, value in (request.get("settings") or {}).items():
        con.execute(f"SET {name} = {literal(value) if isinstance(value, str) else json.dumps(value)}")
    try:
        for statement in request.get("setup") or ():
            con.execute(statement)
        relation = con.sql(request["sql"])
        if relation is None:
            raise Refused("the last statement returned no rows (not a query)")
        types = [[name, str(kind)] for name, kind in zip(relation.columns, relation.types, strict=True)]
        table = relation.to_arrow_table()
    except duckdb.Error as error:
        raise Refused(f"{type(error).__name__}: {error}") from error
    return table, types


def chdb_answer(request: dict[str, Any]) -> tuple[Any, list[list[str]]]:
    from chdb import session

    sess = session.Session()
    try:
        # ClickHouse's String is bytes: in Arrow it is binary, so a non-UTF-8 value (a BINARY
        # column read from Iceberg or Delta) does not break the conversion.
        settings = {"session_timezone": "UTC", "output_format_arrow_string_as_string": 0}
        settings.update(request.get("settings") or {})
        try:
            for name, value in settings.items():
                sess.query(f"SET {name} = {literal(value) if isinstance(value, str) else json.dumps(value)}")
            for statement in request.get("setup") or ():
                sess.query(statement)
            sql = request["sql"]
            described = json.loads(sess.query(f"DESCRIBE ({sql})", "JSONCompact").bytes())
            types = [[row[0], row[1]] for row in described["data"]]
            table = sess.query(sql, "ArrowTable")
        except Exception as error:  # chdb's ChdbError, RuntimeError: all are the engine's answer
            raise Refused(f"{type(error).__name__}: {error}") from error
    finally:
        sess.close()
    return table, types


def main() -> int:
    request = json.load(sys.stdin)
    out = pathlib.Path(request["out"])
    try:
        if request["engine"] == "duckdb":
            table, types = duckdb_answer(request)
        elif request["engine"] == "chdb":
            table, types = chdb_answer(request)
        else:
            raise Refused(f"unknown engine {request['engine']!r}")
    except Refused as refusal:
        out.with_name(out.name + ".error.json").write_text(json.dumps({"message": str(refusal)}))
        return 3
    import pyarrow as pa
    import pyarrow.ipc

    versions = {name: sys.modules[name].__version__ for name in ("duckdb", "chdb", "pyarrow") if name in sys.modules}
    metadata = {"engine": request["engine"], "types": types, "versions": versions}
    schema = table.schema.with_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata)})
    with pa.OSFile(str(out), "wb") as sink, pyarrow.ipc.new_file(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - any other failure: the parent shows this traceback
        traceback.print_exc()
        sys.exit(2)
