"""The project's few touchpoints with Dagster internals, checked by name so that an upgrade that
moves one fails here, loudly, rather than in an export."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from dagster import AssetSelection, define_asset_job
from dagster_snowflake import SnowflakeResource

from data_migration import dagster_private
from data_migration.resources import deployment_from_env
from data_migration.snowflake.resource import EmbeddedSnowflakeResource
from data_migration_tests.support import local_folder

PACKAGE = Path(__file__).resolve().parent.parent / "data_migration"


def test_only_dagster_private_imports_dagster_internals():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "dagster_private.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"^\s*(from|import)\s+dagster(_\w+)?\._", line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "cron, valid",
    [("0 6 * * *", True), ("@daily", True), ("*/15 * * * 1-5", True), ("61 * * * *", False), ("daily", False)],
)
def test_the_cron_check_dagster_applies(cron: str, valid: bool):
    assert dagster_private.is_valid_cron_string(cron) is valid


def test_define_asset_job_returns_the_private_class():
    job = define_asset_job("j", selection=AssetSelection.all())
    assert isinstance(job, dagster_private.UnresolvedAssetJobDefinition)


def test_the_embedded_resource_overrides_dagster_snowflakes_public_get_connection(tmp_path: Path, tpch_dir: Path):
    """The emulator's port reaches the connector through get_connection (public) and the resource's
    public connection arguments, not through dagster-snowflake's private _connection_args."""
    assert "raw_conn" in inspect.signature(SnowflakeResource.get_connection).parameters
    assert "_connection_args" not in EmbeddedSnowflakeResource.__dict__
    local = local_folder(tmp_path, tpch_dir)
    snowflake = deployment_from_env({"DATA_MIGRATION_LOCAL_DIR": str(local)}).resources["snowflake"]
    with snowflake.get_connection() as connection:
        assert connection.host == "127.0.0.1" and connection.port != 443
        cursor = connection.cursor()
        cursor.execute("SELECT COUNT(*) FROM NATION")
        assert cursor.fetchall() == [(25,)]
        assert (connection.database, connection.schema) == ("SNOWFLAKE_SAMPLE_DATA", "TPCH_SF1")
