"""The only module that imports Dagster's private API, each name with why no public one serves.

A Dagster upgrade that moves or changes one of these fails `test_dagster_private.py` by name,
rather than an export somewhere else.
"""

from __future__ import annotations

# What define_asset_job returns. Dagster exports the function but not this class; used only to
# type the jobs built in schedules.py.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# The IO manager that dagster-snowflake's SnowflakeIOManager factory returns, built around a database
# client. loads/dataframes.py builds it with a client that connects to the embedded emulator, whose port
# is only known once it runs; Dagster does not export the class.
from dagster._core.storage.db_io_manager import DbIOManager

# The cron check Dagster applies to ScheduleDefinition. config/exports.py runs it while the export list is
# loaded, so that a bad `schedule:` is reported with the file, entry and field like every other
# problem, instead of as Dagster's error when the definitions are built.
from dagster._utils.schedules import is_valid_cron_string

__all__ = ["DbIOManager", "UnresolvedAssetJobDefinition", "is_valid_cron_string"]
