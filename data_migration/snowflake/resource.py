"""The Snowflake resource every export and load runs through: dagster-snowflake's, with the
per-query timeout and the export stage, and its twin pointed at the embedded emulator.

Which one a deployment uses, and with what settings, is resources.py's choice (the only module
that reads the environment); this module only defines them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import InitResourceContext
from dagster_snowflake import SnowflakeResource
from pydantic import Field

from data_migration.local import emulator

DEFAULT_TPCH_SCALE = "0.01"


class SnowflakeExportResource(SnowflakeResource):
    """dagster-snowflake's resource, plus the per-query timeout every export runs under."""

    query_timeout_seconds: int = Field(
        default=3600, description="Snowflake cancels an export query that runs longer than this."
    )
    export_stage: str | None = Field(
        default=None,
        description="The named external stage over the bucket that `method: unload` exports unload to, "
        "as SQL (quoted parts).",
    )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if context.log:
            context.log.info(f"Source: {self.describe()}")

    def describe(self) -> str:
        # Only names, never the resource itself: its repr holds resolved credentials.
        return f"Snowflake account {self.account!r} as user {self.user!r}"


class EmbeddedSnowflakeResource(SnowflakeExportResource):
    """The same resource, pointed at the in-process emulator (started on first connection)."""

    local_dir: str = Field(description="Folder for the emulator's TPC-H data.")
    tpch_scale: str = Field(default=DEFAULT_TPCH_SCALE, description="TPC-H scale factor.")

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        """dagster-snowflake's connection, to this process's emulator (started on first use).

        The port is only known once the emulator runs in the process that connects, so it is
        passed through the resource's public connection arguments here, not at definition time.
        """
        port = emulator.ensure_started(Path(self.local_dir), self.tpch_scale)
        own = {"local_dir", "tpch_scale", "additional_snowflake_connection_args"}
        fields = self.model_dump(by_alias=True, exclude=own)
        args = {
            **(self.additional_snowflake_connection_args or {}),
            "host": "127.0.0.1",
            "port": port,
            "protocol": "http",
        }
        pointed = SnowflakeExportResource(**fields, additional_snowflake_connection_args=args)
        with pointed.get_connection(raw_conn=raw_conn) as connection:
            yield connection

    def describe(self) -> str:
        return (
            f"embedded Snowflake emulator (fakesnow) with TPC-H SF{self.tpch_scale} in "
            f"{emulator.DATABASE}.{emulator.SCHEMA}"
        )
