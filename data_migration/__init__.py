"""Snowflake to S3 exports as Dagster assets.

`defs` is what Dagster loads (`-m data_migration`, `-m data_migration.definitions`, `dg`); it is
a lazy `@dagster.definitions` function, so importing this package reads no YAML and no
environment.
"""

from __future__ import annotations

from data_migration.definitions import defs

__all__ = ["defs"]
