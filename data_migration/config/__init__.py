"""The export list: YAML in, typed specs out, every problem found before any network call.

Owns the list's entries (`exports.py`, `loads.py`), the list as a whole (`lists.py`: reading the
YAML, the checks across entries), and the values entries hold, without Dagster and without the
network: Snowflake names and the one-read-only-statement rule (`names.py`), object keys
(`paths.py`), partition windows (`windows.py`), cursor values (`cursors.py`) and the one grammar
of a duration (`durations.py`).

May import: nothing of the project but `dagster_private` (the cron check, imported when used).
Everything else imports the specs from here.
"""

from __future__ import annotations

from data_migration.config.exports import ExportSpec
from data_migration.config.lists import DEFAULT_CONFIG_PATH, ExportsConfig, load_exports, parse_exports
from data_migration.config.loads import LoadSpec
from data_migration.config.problems import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "ExportSpec",
    "ExportsConfig",
    "LoadSpec",
    "load_exports",
    "parse_exports",
]
