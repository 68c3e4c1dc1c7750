"""What a load reads: the files of an export's last committed output (its manifest's parts, or
its one object, read through the manifest reader the exports' checks use) or of an object or
folder of the bucket, each with the rows and bytes recorded for it, and their columns with exact
Snowflake types (from the Parquet schema)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from data_migration.config import LoadSpec
from data_migration.files.formats.parquet import ParquetReader
from data_migration.files.layout import FilePart, read_committed, read_manifest
from data_migration.files.storage import ObjectStore
from data_migration.loads.sql import (
    LoadColumn,
    LoadSqlError,
    load_column,
)


@dataclass(frozen=True)
class SourceFile:
    key: str  # in the bucket
    uri: str
    rows: int  # as the manifest (or the file's footer) records them
    size: int
    sha256: str | None
    file_id: str  # what identifies these bytes in the append ledger


@dataclass(frozen=True)
class LoadSource:
    """What a run loads: the files, their columns with exact types, and where they were read."""

    files: tuple[SourceFile, ...]
    columns: tuple[LoadColumn, ...]
    origin: str  # the manifest's or the object's URI

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


class LoadError(RuntimeError):
    """A load cannot go on; the message says what to do. Not transient."""


# The source ----------------------------------------------------------------------------------


def resolve_source(spec: LoadSpec, store: ObjectStore, latest: Mapping[str, Any] | None) -> LoadSource:
    """The files a load reads, checked against the store. `latest` is the metadata of the
    source export's last materialization (None when it has none, or for an s3_path load)."""
    if spec.source is not None:
        export = spec.source
        if latest is None:
            raise LoadError(
                f"{export.label} has no materialization yet: materialize it first "
                f"(or select both: --select '+{'/'.join(spec.asset_key_path)}')"
            )
        if export.output_prefix is not None:
            return _from_manifest(store, export.s3_path)
        return _from_object(store, export.s3_path, latest)
    assert spec.s3_path is not None
    if spec.s3_path.endswith("/"):
        folder = spec.s3_path.rstrip("/")
        manifest, _ = read_committed(store, folder + ".parquet")
        if manifest is not None:
            return _from_manifest(store, folder + ".parquet")
        keys = [k for k in (store.list_keys(folder + "/") or []) if k.endswith(".parquet")]
        if not keys:
            raise LoadError(f"{store.uri(folder + '/')} holds no manifest.json and no .parquet file")
        return _from_files(store, sorted(keys), store.uri(folder + "/"))
    return _from_files(store, [spec.s3_path], store.uri(spec.s3_path))


def _from_manifest(store: ObjectStore, key: str) -> LoadSource:
    manifest = read_manifest(store, key)
    columns = manifest.content.get("columns")
    if not columns:
        raise LoadError(f"{manifest.uri} records no columns; export it again to load it")
    files = tuple(_listed(part) for part in manifest.parts)
    if sum(f.rows for f in files) != manifest.rows:
        raise LoadError(f"{manifest.uri}: its parts hold {sum(f.rows for f in files)} rows, not {manifest.rows}")
    return LoadSource(
        files,
        tuple(load_column(c["name"], c["snowflake_type"], c.get("arrow_type")) for c in columns),
        manifest.uri,
    )


def _listed(part: FilePart) -> SourceFile:
    return SourceFile(part.key, part.uri, part.rows, part.size, part.sha256, part.sha256 or f"{part.size}:{part.key}")


def _from_object(store: ObjectStore, key: str, latest: Mapping[str, Any]) -> LoadSource:
    """An export's one object, as its last materialization recorded it."""
    uri = store.uri(key)
    stat = store.stat(key)
    recorded_size = _value(latest.get("size_bytes"))
    if stat is None:
        raise LoadError(f"{uri} is not in the bucket; materialize the export again")
    if recorded_size is not None and stat.size != recorded_size:
        raise LoadError(
            f"{uri} is {stat.size} bytes, but the export's last materialization wrote {recorded_size}: it "
            "changed since; materialize the export again"
        )
    rows = ParquetReader.footer(lambda length: store.read_suffix(key, length)).num_rows
    recorded_rows = _value(latest.get("dagster/row_count"))
    if recorded_rows is not None and rows != recorded_rows:
        raise LoadError(f"{uri} holds {rows} rows, but the export's last materialization recorded {recorded_rows}")
    schema = _value(latest.get("dagster/column_schema"))
    if schema is None:
        raise LoadError(f"the export's last materialization of {uri} records no column schema; materialize it again")
    columns = tuple(
        load_column(c.name, c.type, (c.description or "").removeprefix("Arrow: ") or None) for c in schema.columns
    )
    sha = _value(latest.get("sha256"))
    return LoadSource((SourceFile(key, uri, rows, stat.size, sha, sha or f"{stat.size}:{key}"),), columns, uri)


def _from_files(store: ObjectStore, keys: Sequence[str], origin: str) -> LoadSource:
    """Parquet objects no export of this project wrote: rows and types from each footer."""
    files = []
    schema: pa.Schema | None = None
    for key in keys:
        try:
            footer = ParquetReader.footer(lambda length, key=key: store.read_suffix(key, length))
        except FileNotFoundError:
            raise LoadError(f"{store.uri(key)} is not in the bucket") from None
        except ValueError as error:
            raise LoadError(f"{store.uri(key)}: {error}") from None
        arrow = footer.schema.to_arrow_schema()
        if schema is not None and not arrow.equals(schema):
            raise LoadError(f"{store.uri(key)} has other columns than {store.uri(keys[0])}: {arrow} vs {schema}")
        schema = arrow
        stat = store.stat(key)
        assert stat is not None
        files.append(
            SourceFile(key, store.uri(key), footer.num_rows, stat.size, None, f"{stat.size}:{stat.checksum}:{key}")
        )
    assert schema is not None
    return LoadSource(tuple(files), tuple(_arrow_column(f) for f in schema), origin)


def _arrow_column(column: pa.Field) -> LoadColumn:
    """A Parquet column's exact Snowflake type."""
    kind = column.type
    if pa.types.is_integer(kind):
        name = "NUMBER(38,0)"
    elif pa.types.is_decimal(kind) and kind.precision <= 38:
        name = f"NUMBER({kind.precision},{kind.scale})"
    elif pa.types.is_floating(kind):
        name = "FLOAT"
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        name = "VARCHAR"
    elif pa.types.is_boolean(kind):
        name = "BOOLEAN"
    elif pa.types.is_date(kind):
        name = "DATE"
    elif pa.types.is_timestamp(kind):
        scale = {"s": 0, "ms": 3, "us": 6, "ns": 9}[kind.unit]
        name = f"TIMESTAMP_{'TZ' if kind.tz else 'NTZ'}({scale})"
    elif pa.types.is_time(kind):
        name = f"TIME({ {'s': 0, 'ms': 3, 'us': 6, 'ns': 9}[kind.unit] })"
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        name = "BINARY"
    elif pa.types.is_nested(kind):
        return LoadColumn(column.name, "VARIANT")
    else:
        raise LoadSqlError(f"column {column.name!r} is {kind}, which a load has no Snowflake type for")
    return load_column(column.name, name, str(kind))


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)
