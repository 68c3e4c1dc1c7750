"""Users' own DataFrame assets: dagster-snowflake-pandas' IO manager from the project's resources,
writing a DataFrame to a table and reading it back downstream, against fakesnow's server (through
the connector's real write_pandas: temporary stage, PUT, INFER_SCHEMA, COPY) and on the embedded
default; and the emulator's answers to the statements write_pandas sends.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pandas as pd

from data_migration.definitions import build_definitions
from data_migration.loads.dataframes import IO_MANAGER_KEY
from data_migration.local import emulator
from data_migration.local.server import _inline_identifiers
from data_migration.resources import deployment_from_env
from data_migration_tests.support import Snowflake, local_folder, write_config


def assets(schema: str) -> list[dg.AssetsDefinition]:
    @dg.asset(key_prefix=[schema], io_manager_key=IO_MANAGER_KEY)
    def scores() -> pd.DataFrame:
        return pd.DataFrame(
            {"ID": [1, 2, 3], "NAME": ["ann", "bob", None], "AMOUNT": [1.5, 2.25, -3.0], "ACTIVE": [True, False, True]}
        )

    @dg.asset(key_prefix=[schema], io_manager_key=IO_MANAGER_KEY)
    def doubled(scores: pd.DataFrame) -> pd.DataFrame:
        # The library hands a table back with lower-case column names.
        return scores.assign(amount=scores["amount"] * 2)

    return [scores, doubled]


def materialize(defs: dg.Definitions, schema: str) -> dg.ExecuteInProcessResult:
    keys = [dg.AssetKey([schema, "scores"]), dg.AssetKey([schema, "doubled"])]
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(asset_selection=keys, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_a_dataframe_asset_is_written_to_a_table_and_read_back_downstream(
    production_env: dict, fake_snowflake: Snowflake, tmp_path: Path
):
    schema = f"DF_{uuid.uuid4().hex[:8].upper()}"
    config = write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "exports/region.parquet"}])
    defs = dg.Definitions.merge(build_definitions(config, production_env), dg.Definitions(assets=assets(schema)))
    result = materialize(defs, schema)
    assert result.success, [e.event_specific_data.error.message for e in result.get_step_failure_events()]
    rows = fake_snowflake.execute(
        f"SELECT ID, NAME, AMOUNT, ACTIVE FROM {emulator.DATABASE}.{schema}.DOUBLED ORDER BY ID"
    )
    assert rows == [(1, "ann", 3.0, True), (2, "bob", 4.5, False), (3, None, -6.0, True)]
    types = fake_snowflake.execute(f"DESCRIBE TABLE {schema}.SCORES")
    assert [(row[0], row[1]) for row in types] == [
        ("ID", "NUMBER(38,0)"), ("NAME", "VARCHAR(16777216)"), ("AMOUNT", "FLOAT"), ("ACTIVE", "BOOLEAN"),
    ]  # fmt: skip
    sent = fake_snowflake.recorder.queries
    assert any(q.startswith("COPY INTO identifier(?)") for q in sent)  # the library's own write_pandas


def test_the_dataframe_io_manager_signs_in_as_loads_do(production_env: dict):
    resources = deployment_from_env(
        {**production_env, "SNOWFLAKE_ROLE": "READER", "SNOWFLAKE_LOAD_ROLE": "LOADER"}
    ).resources
    manager = resources[IO_MANAGER_KEY]
    assert manager.role == "LOADER" and manager.database == emulator.DATABASE
    assert "CANARY" not in repr(manager.password)  # an EnvVar, resolved at run time
    without = {k: v for k, v in production_env.items() if k != "SNOWFLAKE_DATABASE"}
    assert IO_MANAGER_KEY not in deployment_from_env(without).resources  # the library needs a database


def test_a_dataframe_asset_on_the_embedded_default(tmp_path: Path, tpch_dir: Path):
    env = {"DATA_MIGRATION_LOCAL_DIR": str(local_folder(tmp_path, tpch_dir))}
    config = write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "exports/region.parquet"}])
    defs = dg.Definitions.merge(build_definitions(config, env), dg.Definitions(assets=assets("SCORING")))
    result = materialize(defs, "SCORING")
    assert result.success, [e.event_specific_data.error.message for e in result.get_step_failure_events()]
    event = result.asset_materializations_for_node("SCORING__doubled")[0]
    assert event.metadata["dagster/row_count"].value == 3


def test_identifier_bindings_are_written_into_the_statement():
    request = {
        "sqlText": "COPY INTO identifier(?) (\"A\") FROM (SELECT $1:A FROM '@S') ON_ERROR=? /* ? */",
        "bindings": {"1": {"type": "TEXT", "value": '"DB"."S"."T"'}, "2": {"type": "TEXT", "value": "abort_statement"}},
    }
    inlined = _inline_identifiers(request)
    assert inlined["sqlText"].startswith('COPY INTO "DB"."S"."T" ("A")')
    assert inlined["bindings"] == {"1": {"type": "TEXT", "value": "abort_statement"}}
    hostile = {"sqlText": "DROP TABLE identifier(?)", "bindings": {"1": {"type": "TEXT", "value": "T; DROP X"}}}
    assert _inline_identifiers(hostile) is hostile  # not a name: left for the server to refuse
    plain = {"sqlText": "SELECT ? AS A", "bindings": {"1": {"type": "TEXT", "value": "x"}}}
    assert _inline_identifiers(plain) is plain
