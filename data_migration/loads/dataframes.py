"""Users' own DataFrame assets into Snowflake tables: Dagster's dagster-snowflake-pandas IO manager
(the successor of the original pipeline's `write_dataframe`), pointed at this deployment's Snowflake.

An asset with `io_manager_key="snowflake_io_manager"` that returns a pandas DataFrame is written to
the table named by its key (`ANALYTICS/SCORES` is ANALYTICS.SCORES in the deployment's database) by
the library's own `write_pandas` (a temporary stage, PUT, COPY; the table created when missing), and
a downstream asset receives it back as a DataFrame. It signs in as loads do (SNOWFLAKE_LOAD_ROLE
when set). On the embedded default it writes to the emulator, which starts in the process that
first connects; the library's client is given the emulator's address at that moment, the one
thing this module adds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import InitResourceContext, OutputContext
from dagster_snowflake import SnowflakeResource
from dagster_snowflake.snowflake_io_manager import SnowflakeDbClient
from dagster_snowflake_pandas import SnowflakePandasIOManager
from pydantic import Field

from data_migration.dagster_private import DbIOManager
from data_migration.local import emulator

IO_MANAGER_KEY = "snowflake_io_manager"


class EmbeddedSnowflakePandasIOManager(SnowflakePandasIOManager):
    """dagster-snowflake-pandas' IO manager, to this process's emulator."""

    local_dir: str = Field(description="Folder for the emulator's TPC-H data.")
    tpch_scale: str = Field(description="TPC-H scale factor.")

    def create_io_manager(self, context: InitResourceContext) -> DbIOManager:
        # As SnowflakeIOManager.create_io_manager, with the emulator's client.
        return DbIOManager(
            db_client=_EmulatorClient(Path(self.local_dir), self.tpch_scale),
            io_manager_name="SnowflakeIOManager",
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
        )


class _EmulatorClient(SnowflakeDbClient):
    """The library's client, connecting to the emulator's port (known once it runs)."""

    def __init__(self, local_dir: Path, scale: str):
        self._local_dir = local_dir
        self._scale = scale

    @contextmanager
    def connect(self, context: OutputContext, table_slice: Any) -> Iterator[Any]:  # type: ignore[override]
        port = emulator.ensure_started(self._local_dir, self._scale)
        own = {"schema", "local_dir", "tpch_scale", "additional_snowflake_connection_args"}
        config = {k: v for k, v in (context.resource_config or {}).items() if k not in own}
        args = {
            **((context.resource_config or {}).get("additional_snowflake_connection_args") or {}),
            "host": "127.0.0.1",
            "port": port,
            "protocol": "http",
        }
        resource = SnowflakeResource(schema=table_slice.schema, **config, additional_snowflake_connection_args=args)
        with resource.get_connection(raw_conn=False) as connection:
            yield connection
