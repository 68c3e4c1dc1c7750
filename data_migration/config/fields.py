"""An `exports:` entry's fields as written in the YAML, each with its description and its real
default: what the list's JSON Schema (schema.py) and the component's are generated from. Their
meaning is checked by exports.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from data_migration.config.cursors import IncrementalEntry
from data_migration.config.freshness import FreshnessEntry
from data_migration.config.windows import PartitionEntry

FileType = Literal["parquet", "csv", "json"]  # a file's format (what loads read back)
# What an export writes: a file of one of those formats, or an open table format's table.
ExportFileType = Literal["parquet", "csv", "json", "iceberg", "delta"]
TABLE_FILE_TYPES = ("iceberg", "delta")


class IcebergEntry(BaseModel):
    """`iceberg:`: the table's name in the Iceberg catalog."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    namespace: str | None = Field(
        default=None,
        json_schema_extra={"default": "data_migration"},
        description="The catalog namespace (default data_migration); a nested one as a.b.",
    )
    table: str | None = Field(
        default=None,
        description="The table's name in the namespace (default: the export's table name in lower case, "
        "its parts joined by _).",
    )


class ExportEntry(BaseModel):
    """One entry as written in the YAML; strict, so a number is not silently taken as a path."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    table: str = Field(
        description="The asset's name, and the Snowflake table to export when `query` is null. Written as in "
        'Snowflake SQL: unquoted names resolve to upper case, "double-quoted" ones keep their case; '
        "db.schema.table is allowed."
    )
    s3_path: str = Field(
        description="The object key inside the bucket (S3_BUCKET_NAME), e.g. exports/x/data.parquet; for "
        "file_type iceberg or delta the table's folder, e.g. lake/orders (no extension)."
    )
    file_type: ExportFileType = Field(
        default="parquet",
        description="parquet, csv, or json (JSON Lines: one object per line); iceberg or delta: an Apache "
        "Iceberg (v2) or Delta Lake table at s3_path (docs/table-formats.md).",
    )
    iceberg: IcebergEntry | None = Field(
        default=None,
        description="file_type iceberg only: the table's name in the catalog, {namespace, table} (default "
        "namespace data_migration, table the export's table name in lower case).",
    )
    query: str | None = Field(
        default=None, description="One read-only SELECT (or WITH ... SELECT); null exports the whole table."
    )
    schedule: str | None = Field(
        default=None, description="A cron string (UTC); exports sharing one become one scheduled job."
    )
    csv_escape_formulas: bool | None = Field(
        default=None,
        json_schema_extra={"default": False},
        description="csv only (default false: text exactly as in Snowflake): true prefixes ' to text cells "
        "starting with = + - @ tab CR, so that spreadsheets do not run them (the text then differs).",
    )
    timestamp_unit: Literal["us", "ns"] | None = Field(
        default=None,
        json_schema_extra={"default": "us"},
        description="Times and timestamps in microseconds (us, default: what Spark, Iceberg and most lake "
        "engines read) or nanoseconds (ns, Snowflake's TIMESTAMP(9) exactly). With us, a value with digits "
        "below the microsecond fails the export rather than being rounded.",
    )
    compression: Literal["snappy", "zstd", "gzip", "none"] | None = Field(
        default=None,
        description="parquet: snappy (default), zstd, gzip, none; csv and json: none (default) or gzip, "
        "and s3_path then ends in .gz.",
    )
    json_decimals: Literal["string", "number"] | None = Field(
        default=None,
        json_schema_extra={"default": "string"},
        description="json only: string (default, exact text in quotes) or number (the same exact text as a JSON "
        "number; many readers then make it a float).",
    )
    verify: Literal["metadata", "full"] | None = Field(
        default=None,
        json_schema_extra={"default": "metadata"},
        description="How the checks prove what landed: metadata (default: size, CRC32 and Parquet footers) or "
        "full (download and parse every row).",
    )
    max_rows_per_file: PositiveInt | None = Field(
        default=None,
        description="Write parts of at most this many rows and a manifest.json, under s3_path minus its extension.",
    )
    max_file_size_mb: PositiveFloat | PositiveInt | None = Field(
        default=None, description="Write parts of at most this many megabytes (10^6 bytes, at least 1) and a manifest."
    )
    preview: bool | None = Field(
        default=None,
        json_schema_extra={"default": True},
        description="Show the first 10 rows in the materialization (default true). false keeps row values out "
        "of Dagster's event log (personal data); DATA_MIGRATION_PREVIEW=off does it for every export.",
    )
    row_group_rows: PositiveInt | None = Field(
        default=None,
        json_schema_extra={"default": 250_000},
        description="parquet only (default 250000): rows per row group.",
    )
    partition: PartitionEntry | None = Field(
        default=None,
        description="One object per hour, day, week or month of a date or timestamp column; s3_path then "
        "contains {partition}.",
    )
    incremental: IncrementalEntry | None = Field(
        default=None,
        description="Each run exports only the rows past the last run's mark of a growing column, as new parts "
        "and a manifest.",
    )
    method: Literal["stream", "unload"] | None = Field(
        default=None,
        json_schema_extra={"default": "stream"},
        description="stream (default: the rows pass through the worker) or unload (Snowflake's COPY INTO writes "
        "the Parquet files straight to the bucket).",
    )
    skip_unchanged: bool | None = Field(
        default=None,
        json_schema_extra={"default": False},
        description="Skip the export (no query that reads data, nothing written) when no table it reads changed "
        "since its last committed export, by Snowflake's change token. Default false.",
    )
    automation: Literal["on_change"] | None = Field(
        default=None,
        description="on_change: Dagster's automation materializes the export when an observation of a table it "
        "reads finds a change; its tables are observed on `schedule` (or hourly).",
    )
    freshness: FreshnessEntry | None = Field(
        default=None,
        description="How late the last materialization may be before the UI warns or fails: "
        "{fail_after: 26h, warn_after: 25h} or {deadline_cron: '0 7 * * *', lower_bound: 24h}.",
    )
