"""Server-side unload (`method: unload`): Snowflake's own `COPY INTO` a named stage writes the files.

Snowflake writes the bytes, in parallel, straight to the bucket; the project still owns what
makes the export trustworthy: the generation folder the files go to, the statement (built from
quoted identifiers and validated options, never pasted text), the check that each file Snowflake
reports is in the bucket with the size it reports, the manifest (the format and place of a split
export's, committed with the same conditional write), and the cleanup. Readers, `load_input` and
the asset checks cannot tell the methods apart.

Types: the query's columns are described first (compiled, not run) and the unload is shaped to
follow the project's type table where Snowflake allows it: TIMESTAMP_TZ and TIMESTAMP_LTZ, which
Snowflake refuses to unload to Parquet, are unloaded as their UTC instant (a TIMESTAMP_NTZ of the
UTC wall clock). What still differs from a streamed export is in the README's type table.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from data_migration.config.names import Identifier, string_literal
from data_migration.files.layout import FilePart, ManifestError
from data_migration.files.storage import ObjectStore
from data_migration.snowflake.queries import Column

# What Snowflake writes when the statement does not say (16 MB); the export's max_file_size_mb
# overrides it. Snowflake's maximum for S3 is 5 GB.
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_FILE_BYTES = 5 * 1024**3
_ZONED = ("TIMESTAMP_TZ", "TIMESTAMP_LTZ")


class UnloadMismatch(ManifestError):
    """A file Snowflake reported is not in the bucket as reported (or the stage is elsewhere)."""


def shaped_query(query: str, columns: Sequence[Column]) -> str:
    """The export's query with zoned timestamps as UTC instants, every column by name, in order."""
    if not any(column.snowflake_type.startswith(_ZONED) for column in columns):
        return query
    selected = []
    for column in columns:
        name = Identifier(column.name, column.name).quoted()
        if column.snowflake_type.startswith(_ZONED):
            selected.append(f"CAST(CONVERT_TIMEZONE('UTC', {name}) AS TIMESTAMP_NTZ(9)) AS {name}")
        else:
            selected.append(name)
    return f"SELECT {', '.join(selected)} FROM ({query})"


def unload_sql(
    stage: str, folder: str, query: str, columns: Sequence[Column], max_file_bytes: int | None, compression: str
) -> str:
    """The COPY statement: into `folder/` of `stage` (quoted parts), Parquet with the columns'
    names, files cut at `max_file_bytes`, one output row per file, the query id in their names."""
    size = DEFAULT_MAX_FILE_BYTES if max_file_bytes is None else min(max(int(max_file_bytes), 1), MAX_FILE_BYTES)
    codec = {"snappy": "SNAPPY", "none": "NONE"}[compression]
    location = string_literal(f"@{stage}/{folder}/")  # quoted: a key may hold spaces
    return (
        f"COPY INTO {location} FROM ({shaped_query(query, columns)}) "
        f"FILE_FORMAT = (TYPE = PARQUET COMPRESSION = {codec}) HEADER = TRUE MAX_FILE_SIZE = {size} "
        "DETAILED_OUTPUT = TRUE INCLUDE_QUERY_ID = TRUE"
    )


def stored_parts(store: ObjectStore, folder: str, output: Sequence[Mapping[str, Any]]) -> list[FilePart]:
    """The files Snowflake reported (FILE_NAME, FILE_SIZE, ROW_COUNT per output row with
    DETAILED_OUTPUT), each checked with one HEAD: it must be in `folder` with the reported size.

    An unload of no rows writes no file (https://docs.snowflake.com/en/sql-reference/sql/copy-into-location);
    what it returns then is not documented: no row, or a row without a file (the summary's
    ROWS_UNLOADED = 0, or an empty FILE_NAME). Each is read as no file; a row that names no file
    but counts rows fails."""
    parts = []
    for row in output:
        name, size, rows = row.get("FILE_NAME"), row.get("FILE_SIZE"), row.get("ROW_COUNT")
        if not name:
            unloaded = row.get("ROWS_UNLOADED", rows)
            if unloaded not in (None, 0, "0"):
                raise UnloadMismatch(f"Snowflake reported {unloaded} rows unloaded but no file: {dict(row)}")
            continue
        key = f"{folder}/{posixpath.basename(str(name))}"
        stat = store.stat(key)
        if stat is None:
            raise UnloadMismatch(
                f"Snowflake reported unloading {name}, but {store.uri(key)} does not exist: the export stage "
                "must be over the root of the bucket (its URL s3://<bucket>/)"
            )
        if stat.size != int(size):
            raise UnloadMismatch(f"{store.uri(key)} is {stat.size} bytes, but Snowflake reported {size}")
        parts.append(FilePart(key, store.uri(key), int(rows), int(size), None, stat.checksum))
    return parts


def remove_folder(store: ObjectStore, folder: str) -> int:
    """After a failed unload: whatever Snowflake wrote into this run's folder (best effort; no
    manifest lists it either way)."""
    keys = store.list_keys(f"{folder}/") or []
    return store.delete_keys(keys)
