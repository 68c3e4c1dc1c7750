"""Asset checks that prove each export: what landed is readable, complete, and shaped as before.

One multi-asset check per export reads the object once and reports three checks:
- readable (blocking): the object exists, its size and sha256 equal what the materialization
  recorded, and every row parses in its format (for a split export: the manifest is the one
  recorded, and every part it lists has the listed size, sha256 and rows);
- row_count_matches_source (blocking): the rows in the object equal the row count Snowflake
  reported for the export's query when it ran;
- schema_unchanged (warning): the columns and their Snowflake types equal the previous
  materialization's.
Blocking checks stop downstream assets in the same run from reading a short or broken export.
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
    MetadataValue,
    multi_asset_check,
)

from data_migration.config import ExportSpec
from data_migration.formats import FORMATS, decompressed
from data_migration.layout import ManifestError, manifest_key, read_manifest, verified_bytes
from data_migration.storage import ObjectStore

READABLE = "readable"
ROW_COUNT = "row_count_matches_source"
SCHEMA = "schema_unchanged"
_CHUNK = 8 * 1024 * 1024


def build_export_checks(spec: ExportSpec) -> AssetChecksDefinition:
    key = AssetKey(list(spec.asset_key_path))

    @multi_asset_check(
        name=f"{key.to_python_identifier()}_checks",
        specs=[
            AssetCheckSpec(
                READABLE,
                asset=key,
                blocking=True,
                description="The object exists, matches the recorded size and sha256, and every row parses.",
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
        ],
    )
    # `context` unannotated, as in assets.py: Dagster compares that annotation with its classes.
    def _checks(context, object_store: ObjectStore) -> Iterator[AssetCheckResult]:
        yield from evaluate_export(context, object_store, spec, key)

    return _checks


def evaluate_export(
    context: AssetCheckExecutionContext, store: ObjectStore, spec: ExportSpec, key: AssetKey
) -> Iterator[AssetCheckResult]:
    records = context.instance.fetch_materializations(key, limit=2).records
    if not records:
        message = "the export has not been materialized yet"
        yield _result(key, READABLE, False, message)
        yield _result(key, ROW_COUNT, False, message)
        yield _result(key, SCHEMA, True, "nothing to compare yet", severity=AssetCheckSeverity.WARN)
        return
    latest = _metadata(records[0])
    uri = store.uri(manifest_key(spec.s3_path) if spec.split else spec.s3_path)

    rows: int | None = None
    try:
        rows, size, sha256 = _read_back(store, spec)
    except Exception as error:  # noqa: BLE001 - missing, unreadable or unparseable: the export is not usable
        problem = f"{uri} could not be read back ({type(error).__name__}): {error}"
        yield _result(key, READABLE, False, problem)
    else:
        recorded = (latest.get("size_bytes"), latest.get("sha256"))
        if (size, sha256) != recorded:
            yield _result(
                key,
                READABLE,
                False,
                f"{uri} is {size} bytes with sha256 {sha256}, but the materialization recorded "
                f"{recorded[0]} bytes with sha256 {recorded[1]}",
            )
        else:
            yield _result(key, READABLE, True, f"{uri}: {rows} rows parse", {"uri": MetadataValue.path(uri)})

    source_rows = latest.get("snowflake_row_count")
    if rows is None:
        yield _result(key, ROW_COUNT, False, f"{uri} could not be read, so its rows could not be counted")
    elif source_rows is None:
        yield _result(key, ROW_COUNT, False, "Snowflake did not report a row count for the query")
    else:
        yield _result(
            key,
            ROW_COUNT,
            rows == source_rows,
            f"{rows} rows in the object, {source_rows} reported by Snowflake",
            {"object_rows": MetadataValue.int(rows), "snowflake_rows": MetadataValue.int(source_rows)},
        )

    yield _schema_result(key, latest, _metadata(records[1]) if len(records) > 1 else None)


def _read_back(store: ObjectStore, spec: ExportSpec) -> tuple[int, int, str]:
    """Rows, size and sha256 of the export as it is now: of its object, or of its manifest.

    For a split export every part the manifest lists is read, checked against the size and
    sha256 listed, and parsed; the size is the parts' total, the sha256 the manifest's.
    """
    if spec.split:
        manifest = read_manifest(store, spec.s3_path)
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
        return rows, manifest.size, manifest.sha256
    with store.open_read(spec.s3_path) as source:
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
