"""Asset checks that prove each export: what landed is complete, unchanged, and shaped as before.

One multi-asset check per export reports three checks:
- readable (blocking): the object is exactly what the materialization wrote. By default this
  costs metadata only: its size and the CRC32 the store keeps (one HEAD on S3) equal the ones
  recorded when it was written (where the write itself checked that CRC32 against the writer's
  bytes), and a Parquet file's footer (one ranged read) states the rows written. For a split
  export: the manifest is the one recorded, and each part it lists has the listed size, CRC32
  and (Parquet) footer rows. With `verify: full` (per export) or the check's `full_read_back`
  run config (`data-migration run --verify full`), the whole object is downloaded, its sha256
  compared and every row parsed instead;
- row_count_matches_source (blocking): the rows in the object (its footer, what the writer
  counted, or every row parsed with a full read-back) equal the row count Snowflake reported
  for the export's query when it ran;
- schema_unchanged (warning): the columns and their Snowflake types equal the previous
  materialization's.
Blocking checks stop downstream assets in the same run from reading a short or broken export.

A partitioned export's checks cover every partition the run exported (one, or a backfill's
range): each of the three passes only if it passes for every partition, against that partition's
own materialization, and names the partitions that failed. A fourth, non-blocking check,
partition_column_not_null, counts the query's rows whose partition column is NULL: they fall in
no partition, so no export holds them.

An incremental export's checks are about the increment the run committed: readable proves the
manifest is the one committed, that its row_count is the sum of its parts', and (at metadata
cost) that each of this run's new parts is as written, or (full read-back) every part the
manifest lists; row_count_matches_source compares this increment's rows with Snowflake's count
for the increment's window (0 when nothing was past the mark). A fourth, non-blocking check,
cursor_not_null, counts the query's rows whose cursor is NULL: no increment ever holds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    Field,
    MetadataValue,
    multi_asset_check,
)

from data_migration.config import ExportSpec
from data_migration.config.names import Identifier, null_count_sql
from data_migration.config.paths import split_prefix
from data_migration.config.windows import object_key
from data_migration.conventions import POOL
from data_migration.files.formats import FORMATS, FormatReader, decompressed
from data_migration.files.layout import FilePart, Manifest, ManifestError, manifest_key, read_manifest, verified_bytes
from data_migration.files.storage import ObjectStore
from data_migration.snowflake.queries import count_rows
from data_migration.snowflake.resource import SnowflakeExportResource
from data_migration.snowflake.tags import query_tag

FULL_READ_BACK = "full_read_back"
READABLE = "readable"
ROW_COUNT = "row_count_matches_source"
SCHEMA = "schema_unchanged"
NULL_PARTITION = "partition_column_not_null"
NULL_CURSOR = "cursor_not_null"
_PARTITIONS_SHOWN = 5
_CHUNK = 8 * 1024 * 1024


def build_export_checks(spec: ExportSpec) -> AssetChecksDefinition:
    key = AssetKey(list(spec.asset_key_path))

    @multi_asset_check(
        name=f"{key.to_python_identifier()}_checks",
        # Only these checks query Snowflake (a NULL count); the others read the store.
        pool=POOL if spec.partition or spec.incremental else None,
        config_schema={
            FULL_READ_BACK: Field(
                bool,
                default_value=False,
                description="Download the whole export and parse every row, instead of checking "
                "its size, CRC32 and Parquet footer (also set per export with `verify: full`).",
            )
        },
        specs=[
            AssetCheckSpec(
                READABLE,
                asset=key,
                blocking=True,
                description="The object is exactly what was written: size, CRC32 and Parquet footer (or, "
                "with a full read-back, sha256 and every row).",
            ),
            AssetCheckSpec(
                ROW_COUNT,
                asset=key,
                blocking=True,
                description="Rows in the object equal the row count Snowflake reported for the query.",
            ),
            AssetCheckSpec(
                SCHEMA,
                asset=key,
                description="Columns and types equal the previous materialization's (a warning on drift).",
            ),
            *(
                [
                    AssetCheckSpec(
                        NULL_PARTITION,
                        asset=key,
                        description="No row of the query has a NULL partition column (such rows belong to no "
                        "partition, so no partition exports them; a warning with their count).",
                    )
                ]
                if spec.partition
                else []
            ),
            *(
                [
                    AssetCheckSpec(
                        NULL_CURSOR,
                        asset=key,
                        description="No row of the query has a NULL cursor (such rows are past no mark, so no "
                        "increment exports them; a warning with their count).",
                    )
                ]
                if spec.incremental
                else []
            ),
        ],
    )
    # `context` unannotated, as in exports/assets.py: Dagster compares that annotation with its classes.
    def _checks(context, object_store: ObjectStore, snowflake: SnowflakeExportResource) -> Iterator[AssetCheckResult]:
        config = context.op_execution_context.op_config or {}
        full = spec.verify == "full" or bool(config.get(FULL_READ_BACK))
        yield from evaluate_export(context, object_store, spec, key, full)
        if spec.partition is not None:
            column = spec.partition.column
            yield _null_rows_result(context, snowflake, spec, key, NULL_PARTITION, column, "belong to no partition")
        if spec.incremental is not None:
            column = spec.incremental.cursor
            yield _null_rows_result(context, snowflake, spec, key, NULL_CURSOR, column, "are past no mark")

    return _checks


def evaluate_export(
    context: AssetCheckExecutionContext, store: ObjectStore, spec: ExportSpec, key: AssetKey, full: bool = False
) -> Iterator[AssetCheckResult]:
    if spec.partition is None:
        records = context.instance.fetch_materializations(key, limit=2).records
        yield from _evaluate_object(store, spec, key, spec.s3_path, records, full)
        return
    # A partitioned export: each partition this run exported, one result per check for them all.
    operation = context.op_execution_context
    partitions = operation.partition_keys if operation.has_partition_key or operation.has_partition_key_range else []
    if not partitions:
        yield from _nothing_to_check(key, "this run exported no partition")
        return
    by_check: dict[str, list[tuple[str, AssetCheckResult]]] = {}
    for partition in partitions:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=2
        ).records
        for result in _evaluate_object(store, spec, key, object_key(spec.s3_path, partition), records, full):
            by_check.setdefault(result.check_name, []).append((partition, result))
    for name, results in by_check.items():
        yield _combined(key, name, results)


def _nothing_to_check(key: AssetKey, why: str) -> Iterator[AssetCheckResult]:
    yield _result(key, READABLE, False, why)
    yield _result(key, ROW_COUNT, False, why)
    yield _result(key, SCHEMA, True, f"nothing to compare: {why}", severity=AssetCheckSeverity.WARN)


def _combined(key: AssetKey, name: str, results: list[tuple[str, AssetCheckResult]]) -> AssetCheckResult:
    """One check's results over a run's partitions: passed if every partition passed."""
    failed = [(partition, result) for partition, result in results if not result.passed]
    severity = results[0][1].severity
    if not failed:
        description = f"{len(results)} partition(s) passed" + (
            f": {results[0][1].description}" if len(results) == 1 else f" ({results[0][0]} … {results[-1][0]})"
        )
    else:
        shown = "; ".join(f"{partition}: {result.description}" for partition, result in failed[:_PARTITIONS_SHOWN])
        more = f"; and {len(failed) - _PARTITIONS_SHOWN} more" if len(failed) > _PARTITIONS_SHOWN else ""
        description = f"{len(failed)} of {len(results)} partition(s) failed: {shown}{more}"
    return _result(
        key,
        name,
        not failed,
        description,
        {
            "partitions": MetadataValue.int(len(results)),
            "failed_partitions": MetadataValue.json([p for p, _ in failed]),
        },
        severity=severity,
    )


def _null_rows_result(
    context: AssetCheckExecutionContext,
    snowflake: SnowflakeExportResource,
    spec: ExportSpec,
    key: AssetKey,
    check: str,
    identifier: Identifier,
    fate: str,
) -> AssetCheckResult:
    """A warning with the count of the query's rows whose `identifier` column is NULL: they
    `fate` (belong to no partition, are past no mark) and are in no export."""
    column = identifier.name
    try:
        nulls = count_rows(
            snowflake,
            null_count_sql(spec.sql, identifier),
            timeout_seconds=snowflake.query_timeout_seconds,
            query_tag=query_tag(spec, context.run.run_id),
        )
    except Exception as error:  # noqa: BLE001 - reported as the check's outcome
        return _result(
            key,
            check,
            False,
            f"could not count rows with a NULL {column} ({type(error).__name__}): {error}",
            severity=AssetCheckSeverity.WARN,
        )
    if nulls == 0:
        return _result(key, check, True, f"no row has a NULL {column}", severity=AssetCheckSeverity.WARN)
    return _result(
        key,
        check,
        False,
        f"{nulls} row(s) of the query have a NULL {column}: they {fate} and are in no export",
        {"null_rows": MetadataValue.int(nulls)},
        severity=AssetCheckSeverity.WARN,
    )


def _evaluate_object(
    store: ObjectStore, spec: ExportSpec, key: AssetKey, path: str, records: Any, full: bool
) -> Iterator[AssetCheckResult]:
    """The three checks for one object (or one split output) at `path`, against its latest
    materialization (`records`: newest first, up to two)."""
    if not records:
        yield from _nothing_to_check(key, "the export has not been materialized yet")
        return
    latest = _metadata(records[0])
    uri = store.uri(manifest_key(path) if spec.split else path)

    rows: int | None = None
    problem: str | None = None
    how = {"verification": MetadataValue.text("full read-back" if full else "metadata")}
    try:
        if full:
            rows, size, sha256 = _read_back(store, spec, path, latest)
            recorded = (latest.get("size_bytes"), latest.get("sha256"))
            passed = f"{uri}: {rows} rows parse"
            if (size, sha256) != recorded:  # it parses, so its rows still count: it is another object
                problem = (
                    f"{uri} is {size} bytes with sha256 {sha256}, but the materialization recorded "
                    f"{recorded[0]} bytes with sha256 {recorded[1]}"
                )
        else:
            rows, passed = _stored_as_written(store, spec, path, latest, uri)
    except ManifestError as error:  # what is stored is not what was written
        problem = str(error)
    except Exception as error:  # noqa: BLE001 - missing or unreadable: the export is not usable
        problem = f"{uri} could not be read back ({type(error).__name__}): {error}"
    if problem is None:
        yield _result(key, READABLE, True, passed, {"uri": MetadataValue.path(uri), **how})
    else:
        yield _result(key, READABLE, False, problem, how)

    source_rows = latest.get("snowflake_row_count")
    if rows is None:
        yield _result(key, ROW_COUNT, False, f"{uri} is not as written or could not be read, so its rows are unknown")
    elif source_rows is None:
        yield _result(key, ROW_COUNT, False, "Snowflake did not report a row count for the query")
    else:
        where = "in this increment" if spec.incremental else "in the object"
        yield _result(
            key,
            ROW_COUNT,
            rows == source_rows,
            f"{rows} rows {where}, {source_rows} reported by Snowflake",
            {"object_rows": MetadataValue.int(rows), "snowflake_rows": MetadataValue.int(source_rows)},
        )

    yield _schema_result(key, latest, _metadata(records[1]) if len(records) > 1 else None)


def _stored_as_written(
    store: ObjectStore, spec: ExportSpec, path: str, latest: Mapping[str, Any], uri: str
) -> tuple[int, str]:
    """Rows, and what was proven, at metadata cost: the stored size and CRC32 against those
    recorded at write time, and a Parquet file's footer against the rows written. Raises
    ManifestError on any difference."""
    reader = FORMATS[spec.file_type].reader
    if spec.split:
        manifest = _recorded_manifest(store, path, latest, uri)
        # An increment's earlier parts were proven by the runs that wrote them, and the manifest
        # (the one recorded) still lists them unchanged: this run proves its own new parts.
        new = _increment_parts(manifest, path, latest) if spec.incremental else manifest.parts
        rows = 0
        for part in new:
            footer = _same_as_written(store, part.key, part.uri, part.size, part.checksum, part.rows, reader)
            rows += part.rows if footer is None else footer
        listed = sum(part.rows for part in manifest.parts)
        if listed != manifest.rows:
            raise ManifestError(f"{uri}: its parts list {listed} rows, but its row_count is {manifest.rows}")
        what = "size, CRC32 and footer" if spec.file_type == "parquet" else "size and CRC32"
        if spec.incremental:
            return rows, (
                f"{uri}: {len(new)} new part(s), each with the {what} the manifest lists; {rows} new rows; "
                f"{manifest.rows} rows in its {len(manifest.parts)} part(s) in all"
            )
        return rows, f"{uri}: {len(manifest.parts)} part(s), each with the {what} the manifest lists; {rows} rows"
    written = int(latest.get("dagster/row_count", -1))
    footer = _same_as_written(store, path, uri, latest.get("size_bytes"), latest.get("crc32"), written, reader)
    checksum = "and CRC32 " if latest.get("crc32") else ""
    if footer is None:
        return written, f"{uri}: the size {checksum}written; {written} rows counted while writing"
    return footer, f"{uri}: the size {checksum}written; {footer} rows in the Parquet footer"


def _same_as_written(
    store: ObjectStore, key: str, uri: str, size: Any, checksum: Any, rows: int, reader: type[FormatReader]
) -> int | None:
    """Compare one stored file with what was written; return its footer's rows (None if the
    format states none)."""
    stat = store.stat(key)
    if stat is None:
        raise ManifestError(f"{uri} does not exist")
    if stat.size != size:
        raise ManifestError(f"{uri} is {stat.size} bytes, but {size} were written")
    if checksum and stat.checksum and stat.checksum != checksum:
        raise ManifestError(
            f"{uri} has CRC32 {stat.checksum}, but the bytes written had {checksum}: it changed after it was written"
        )
    footer = reader.rows_from_metadata(lambda length: store.read_suffix(key, length))
    if footer is not None and footer != rows:
        raise ManifestError(f"{uri}: its footer states {footer} rows, but {rows} were written")
    return footer


def _recorded_manifest(store: ObjectStore, path: str, latest: Mapping[str, Any], uri: str) -> Manifest:
    manifest = read_manifest(store, path)
    if manifest.sha256 != latest.get("sha256"):
        raise ManifestError(
            f"{uri} has sha256 {manifest.sha256}, but the materialization recorded {latest.get('sha256')}"
        )
    return manifest


def _increment_parts(manifest: Manifest, path: str, latest: Mapping[str, Any]) -> list[FilePart]:
    """The parts an incremental run added (none when it found nothing past the mark)."""
    generation = latest.get("increment_generation")
    if not generation:
        return []
    folder = f"{split_prefix(path)}/{generation}/"
    return [part for part in manifest.parts if part.key.startswith(folder)]


def _read_back(store: ObjectStore, spec: ExportSpec, path: str, latest: Mapping[str, Any]) -> tuple[int, int, str]:
    """Rows, size and sha256 of the export as it is now: of its object, or of its manifest.

    For a split export every part the manifest lists is read, checked against the size and
    sha256 listed, and parsed; the size is the parts' total, the sha256 the manifest's. For an
    incremental export the rows are this increment's (every part is still read and checked).
    """
    if spec.split:
        manifest = read_manifest(store, path)
        rows = 0
        for part in manifest.parts:
            with store.open_read(part.key) as source:
                verified_bytes(source, part)
                counted = FORMATS[spec.file_type].reader.count_rows(decompressed(source, spec.gzip))
            if counted != part.rows:
                raise ManifestError(f"{part.uri} holds {counted} rows, but the manifest lists {part.rows}")
            rows += counted
        if rows != manifest.rows:
            raise ManifestError(f"{manifest.uri}: parts hold {rows} rows, but its row_count is {manifest.rows}")
        if spec.incremental:  # each part's rows were just counted and equal the listed ones
            rows = sum(part.rows for part in _increment_parts(manifest, path, latest))
        return rows, manifest.size, manifest.sha256
    with store.open_read(path) as source:
        digest = hashlib.sha256()
        size = 0
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        source.seek(0)
        rows = FORMATS[spec.file_type].reader.count_rows(decompressed(source, spec.gzip))
    return rows, size, digest.hexdigest()


def _schema_result(key: AssetKey, latest: Mapping[str, Any], previous: Mapping[str, Any] | None) -> AssetCheckResult:
    if previous is None:
        return _result(key, SCHEMA, True, "first materialization: nothing to compare", severity=AssetCheckSeverity.WARN)
    now, before = _columns(latest), _columns(previous)
    if now == before:
        return _result(key, SCHEMA, True, f"{len(now)} columns, as before", severity=AssetCheckSeverity.WARN)
    added = [f"{name} {kind}" for name, kind in now.items() if name not in before]
    removed = [f"{name} {kind}" for name, kind in before.items() if name not in now]
    changed = [
        f"{name} {before[name]} -> {kind}" for name, kind in now.items() if name in before and before[name] != kind
    ]
    parts = [
        f"{label}: {', '.join(items)}"
        for label, items in (("added", added), ("removed", removed), ("changed", changed))
        if items
    ]
    if not parts:  # same columns and types, so only their order differs
        parts.append("column order changed")
    return _result(
        key,
        SCHEMA,
        False,
        "schema drift since the previous materialization: " + "; ".join(parts),
        {
            "added": MetadataValue.json(added),
            "removed": MetadataValue.json(removed),
            "changed": MetadataValue.json(changed),
        },
        severity=AssetCheckSeverity.WARN,
    )


def _columns(metadata: Mapping[str, Any]) -> dict[str, str]:
    schema = metadata.get("dagster/column_schema")
    return {column.name: column.type for column in schema.columns} if schema else {}


def _metadata(record: Any) -> dict[str, Any]:
    materialization = record.asset_materialization
    return {name: value.value for name, value in materialization.metadata.items()} if materialization else {}


def _result(
    key: AssetKey,
    name: str,
    passed: bool,
    description: str,
    metadata: Mapping[str, Any] | None = None,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=passed,
        severity=severity,
        description=description,
        metadata={"summary": MetadataValue.text(description), **(metadata or {})},
    )
