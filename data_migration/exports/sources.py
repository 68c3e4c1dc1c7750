"""The Snowflake tables exports read, as observable source assets upstream of them, so that the
lineage reads table -> export -> load and a table's changes show in the UI.

Observing a table records Snowflake's change token for it (`SYSTEM$LAST_CHANGE_COMMIT_TIME`,
https://docs.snowflake.com/en/sql-reference/functions/system_last_change_commit_time: it moves
with every DML operation on the table, or on a view's underlying tables) as the asset's data
version, with its row count and last change (INFORMATION_SCHEMA.TABLES' ROW_COUNT and
LAST_ALTERED, https://docs.snowflake.com/en/sql-reference/info-schema/tables) as metadata. An
export with `automation: on_change` has its tables observed on its schedule's cron (or hourly),
and Dagster's automation materializes it when an observation finds a new data version.

Names are matched as Snowflake resolves them, not as they are spelled: an unqualified `T` in a
query is the settings' SNOWFLAKE_DATABASE.SNOWFLAKE_SCHEMA.T (`Home`), so `T`, `PUBLIC.T` and
`ANALYTICS.PUBLIC.T` are one table, with one source asset keyed by its full name. A table the
list also loads (by whatever spelling) is not a source of its own: the export depends on the
load's asset; definitions.py does the same across lists.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    BetaWarning,
    DataVersion,
    MetadataValue,
    ObserveResult,
    observable_source_asset,
)

from data_migration.config import ExportSpec, LoadSpec
from data_migration.config.names import NO_HOME, Home, string_literal
from data_migration.config.problems import DAGSTER_NAME, dagster_name
from data_migration.conventions import POOL
from data_migration.exports.unchanged import changed_at, table_text, tokens_from, tokens_sql
from data_migration.snowflake.queries import run_statement
from data_migration.snowflake.resource import SnowflakeExportResource

SOURCE_GROUP = "snowflake_sources"
DEFAULT_OBSERVE_CRON = "0 * * * *"  # an on_change export without a schedule: its tables hourly
Table = tuple[str, ...]


def source_key(table: Table) -> AssetKey:
    """`snowflake/<database>/<schema>/<table>`. A part Dagster cannot name an op after (a quoted name
    with a space or a `$`, which an export may read through its `query`) is written with `_` for
    each such character and a short hash of the exact name, so that two names never meet."""
    return AssetKey(["snowflake", *(_dagster_part(part) for part in table)])


def _dagster_part(part: str) -> str:
    if DAGSTER_NAME.match(part):
        return part
    return dagster_name(part) + "_" + hashlib.sha256(part.encode()).hexdigest()[:6]


def upstream_keys(
    spec: ExportSpec, loads: Sequence[LoadSpec], home: Home = NO_HOME, load_home: Home | None = None
) -> list[AssetKey]:
    """The assets an export reads: each table's source asset, or the load that writes it."""
    loaded = loaded_tables(loads, load_home or home)
    keys = [loaded.get(home.resolve(table), source_key(home.resolve(table))) for table in spec.source_tables]
    return list(dict.fromkeys(keys))  # `T` and `PUBLIC.T` in one query: one upstream


def loaded_tables(loads: Sequence[LoadSpec], home: Home = NO_HOME) -> dict[Table, AssetKey]:
    """The tables the list's loads write (resolved in the loads' `home`), each with its load's asset."""
    return {
        home.resolve(tuple(part.name for part in load.object_name)): AssetKey(list(load.asset_key_path))
        for load in loads
    }


def build_source_assets(
    exports: Sequence[ExportSpec], loads: Sequence[LoadSpec], home: Home = NO_HOME, load_home: Home | None = None
) -> list[AssetsDefinition]:
    loaded = loaded_tables(loads, load_home or home)
    crons: dict[Table, set[str]] = {}
    readers: dict[Table, list[str]] = {}
    for spec in exports:
        for table in dict.fromkeys(home.resolve(table) for table in spec.source_tables):
            if table in loaded:
                continue
            readers.setdefault(table, []).append(spec.table)
            if spec.automation == "on_change":
                crons.setdefault(table, set()).add(spec.schedule or DEFAULT_OBSERVE_CRON)
    return [source_asset(table, readers[table], sorted(crons.get(table, ()))) for table in readers]


def source_asset(table: Table, readers: Sequence[str], crons: Sequence[str]) -> AssetsDefinition:
    """The observable source asset of one table, read by the exports `readers`, observed by the
    automation sensor on each of `crons` (none: only when someone observes it)."""
    condition = None
    for cron in crons:
        tick = AutomationCondition.cron_tick_passed(cron)
        condition = tick if condition is None else condition | tick
    name = ".".join(table)
    with warnings.catch_warnings():  # observable source assets are beta in Dagster 1.13
        warnings.simplefilter("ignore", BetaWarning)

        @observable_source_asset(
            key=source_key(table),
            group_name=SOURCE_GROUP,
            description=(
                f"The Snowflake table (or view) `{name}`, read by {', '.join(readers)}. Observing it records "
                "its change token (SYSTEM$LAST_CHANGE_COMMIT_TIME) as the data version."
            ),
            automation_condition=condition,
            # What definitions.py needs to make one asset of a table several lists read.
            metadata={"read_by": list(readers), "observed_on": list(crons)},
            tags={"dagster/kind/snowflake": ""},
            # The decorator takes no `pool` (it would drop it): the pool's tag, which Dagster reads as one.
            op_tags={"dagster/concurrency_key": POOL},
        )
        def _observe(context, snowflake: SnowflakeExportResource) -> ObserveResult:
            sql = f"{tokens_sql([table])}, ({_row_count_sql(table)}) AS ROW_COUNT, ({_altered_sql(table)}) AS ALTERED"
            context.log.info(f"Observing {name}: {sql}")
            _, rows = run_statement(snowflake, sql, timeout_seconds=snowflake.query_timeout_seconds)
            (row,) = rows
            token = tokens_from(row, [table])[name]
            metadata: dict[str, Any] = {
                "change_token": MetadataValue.text(token),
                "last_change": MetadataValue.text(changed_at({name: token})),
            }
            if row.get("ROW_COUNT") is not None:
                metadata["dagster/row_count"] = MetadataValue.int(int(row["ROW_COUNT"]))
            if row.get("ALTERED") is not None:
                metadata["last_altered"] = MetadataValue.text(str(row["ALTERED"]))
            return ObserveResult(data_version=DataVersion(token), metadata=metadata)

    return _observe


def _information_schema(table: Table) -> tuple[str, str]:
    """The INFORMATION_SCHEMA that lists the table, and the condition on its schema."""
    schema = "CURRENT_SCHEMA()" if len(table) == 1 else string_literal(table[-2])
    where = f"{table_text(table[:1])}.INFORMATION_SCHEMA.TABLES" if len(table) == 3 else "INFORMATION_SCHEMA.TABLES"
    return where, f"TABLE_SCHEMA = {schema} AND TABLE_NAME = {string_literal(table[-1])}"


def _row_count_sql(table: Table) -> str:
    where, condition = _information_schema(table)
    return f"SELECT ROW_COUNT FROM {where} WHERE {condition}"


def _altered_sql(table: Table) -> str:
    where, condition = _information_schema(table)
    return f"SELECT LAST_ALTERED FROM {where} WHERE {condition}"
