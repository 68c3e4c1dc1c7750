"""Asset checks that prove an export to a table (file_type iceberg or delta), read from the
committed snapshot or version itself (the metadata file the materialization recorded, or the
Delta log at its version), never from the catalog's idea of the current one:

- commit_holds_run_files (blocking): the snapshot/version reads exactly the data files this run
  wrote (the materialization's `data_files`): none missing, none of another run's;
- row_count_matches_source (blocking): its row count (Iceberg: the snapshot summary's
  total-records; Delta: the add actions' numRecords) equals the count Snowflake reported;
- schema_unchanged (warning): the columns and their Snowflake types equal the previous
  materialization's (checks.py's rule, shared).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSpec, AssetKey, MetadataValue, multi_asset_check

from data_migration.config import ExportSpec
from data_migration.exports.checks import ROW_COUNT, SCHEMA, _metadata, _result, _schema_result
from data_migration.exports.lake import LakeAccess
from data_migration.tables import delta

COMMIT_FILES = "commit_holds_run_files"
_SHOWN = 3


def build_table_checks(spec: ExportSpec) -> AssetChecksDefinition:
    key = AssetKey(list(spec.asset_key_path))

    @multi_asset_check(
        name=f"{key.to_python_identifier()}_checks",
        specs=[
            AssetCheckSpec(
                COMMIT_FILES,
                asset=key,
                blocking=True,
                description="The committed snapshot/version reads exactly the data files this run wrote.",
            ),
            AssetCheckSpec(
                ROW_COUNT,
                asset=key,
                blocking=True,
                description="The committed snapshot's/version's row count equals the one Snowflake reported.",
            ),
            AssetCheckSpec(
                SCHEMA,
                asset=key,
                description="Columns and types equal the previous materialization's (a warning on drift).",
            ),
        ],
    )
    def _checks(context, lake: LakeAccess) -> Iterator[AssetCheckResult]:  # context unannotated: see checks.py
        records = context.instance.fetch_materializations(key, limit=2).records
        if not records:
            why = "the export has not been materialized yet"
            yield _result(key, COMMIT_FILES, False, why)
            yield _result(key, ROW_COUNT, False, why)
            return
        latest = _metadata(records[0])
        yield from _evaluate(spec, key, lake, latest)
        yield _schema_result(key, latest, _metadata(records[1]) if len(records) > 1 else None)

    return _checks


def _evaluate(
    spec: ExportSpec, key: AssetKey, lake: LakeAccess, latest: Mapping[str, Any]
) -> Iterator[AssetCheckResult]:
    where = _committed(spec, latest)
    try:
        files, rows = _read_commit(spec, lake, latest)
    except Exception as error:  # noqa: BLE001 - an unreadable commit fails both checks
        why = f"{where} could not be read ({type(error).__name__}): {error}"
        yield _result(key, COMMIT_FILES, False, why)
        yield _result(key, ROW_COUNT, False, why)
        return
    written = frozenset(latest.get("data_files") or ())
    missing, other = sorted(written - files), sorted(files - written)
    if not missing and not other:
        yield _result(key, COMMIT_FILES, True, f"{where} reads exactly the {len(files)} data file(s) this run wrote")
    else:
        yield _result(
            key,
            COMMIT_FILES,
            False,
            f"{where}: {len(missing)} file(s) this run wrote are not in it ({', '.join(missing[:_SHOWN])}), "
            f"{len(other)} it reads were not written by this run ({', '.join(other[:_SHOWN])})",
            {"missing": MetadataValue.json(missing), "not_this_runs": MetadataValue.json(other)},
        )
    source = latest.get("snowflake_row_count")
    if rows is None or source is None:
        what = "the commit states no row count" if rows is None else "Snowflake did not report a row count"
        yield _result(key, ROW_COUNT, False, what)
        return
    yield _result(
        key,
        ROW_COUNT,
        rows == source,
        f"{rows} rows in {where}, {source} reported by Snowflake",
        {"table_rows": MetadataValue.int(rows), "snowflake_rows": MetadataValue.int(source)},
    )


def _committed(spec: ExportSpec, latest: Mapping[str, Any]) -> str:
    if spec.file_type == "iceberg":
        return f"snapshot {latest.get('snapshot_id')} ({latest.get('metadata_location')})"
    return f"version {latest.get('table_version')} of {latest.get('dagster/uri')}"


def _read_commit(spec: ExportSpec, lake: LakeAccess, latest: Mapping[str, Any]) -> tuple[frozenset[str], int | None]:
    if spec.file_type == "iceberg":
        from data_migration.tables import iceberg  # pyiceberg only when an Iceberg table is checked

        return iceberg.snapshot_files(
            str(latest["metadata_location"]), lake.iceberg_properties(), int(latest["snapshot_id"])
        )
    return delta.version_files(str(latest["dagster/uri"]), lake.delta_options(), int(latest["table_version"]))
