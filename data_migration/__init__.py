"""Snowflake to S3 exports as Dagster assets.

`defs` is what Dagster loads (`-m data_migration`, `-m data_migration.definitions`, `dg`); it is
a lazy `@dagster.definitions` function, so importing this package reads no YAML and no
environment. Importing it does register one exit hook, which makes the process exit quickly
(shutdown.py). `ExportsComponent` is the export list as a Dagster component (components.py).
"""

from __future__ import annotations

from data_migration import shutdown
from data_migration.components import ExportsComponent
from data_migration.definitions import defs

shutdown.install()

__all__ = ["ExportsComponent", "defs"]
