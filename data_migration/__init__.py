"""Snowflake to S3 exports as Dagster assets. `defs` is what Dagster loads."""

from data_migration.definitions import defs

__all__ = ["defs"]
