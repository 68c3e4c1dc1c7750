"""Choosing the deployment from the environment: embedded default, production, and the errors between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from data_migration.config import DEFAULT_CONFIG_PATH
from data_migration.files.storage import LocalObjectStore, S3ObjectStore
from data_migration.resources import SettingsError, config_path, deployment_from_env
from data_migration.snowflake.queries import open_export_stream
from data_migration.snowflake.resource import EmbeddedSnowflakeResource, SnowflakeExportResource

PRODUCTION = {
    "SNOWFLAKE_ACCOUNT": "acme-prod",
    "SNOWFLAKE_USER": "SVC_EXPORTER",
    "SNOWFLAKE_PRIVATE_KEY_PATH": "/secrets/key.p8",
    "S3_BUCKET_NAME": "acme-exports",
}


def test_no_settings_means_the_embedded_default(tmp_path: Path):
    deployment = deployment_from_env(
        {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path), "AWS_ACCESS_KEY_ID": "x", "AWS_REGION": "eu-west-1"}
    )
    assert deployment.name == "embedded" and deployment.destination_kind == "local"
    assert isinstance(deployment.resources["snowflake"], EmbeddedSnowflakeResource)
    store = deployment.resources["parquet_io_manager"].store
    assert isinstance(store, LocalObjectStore) and store.root == str(tmp_path / "bucket")
    assert set(deployment.resources) == {
        "snowflake",
        "snowflake_load",  # loads sign in on their own (SNOWFLAKE_LOAD_ROLE in production)
        "snowflake_io_manager",  # users' DataFrame assets (loads/dataframes.py)
        "object_store",
        "parquet_io_manager",
        "csv_io_manager",
        "json_io_manager",
        "iceberg_io_manager",  # tables (exports/tables.py), through `lake`
        "delta_io_manager",
        "lake",  # the tables' access to the store and the Iceberg catalog (exports/lake.py)
    }
    lake = deployment.resources["lake"]
    assert lake.store is store and lake.iceberg_catalog is None
    assert lake.catalog_dir == str(tmp_path / "iceberg")  # the SQLite catalog, in the local folder
    assert lake.warehouse() == (tmp_path / "bucket").resolve().as_uri() + "/"


def test_the_iceberg_catalog_setting_names_a_pyiceberg_catalog(tmp_path: Path):
    lake = deployment_from_env({**PRODUCTION, "DATA_MIGRATION_ICEBERG_CATALOG": "glue"}).resources["lake"]
    assert lake.iceberg_catalog == "glue" and lake.warehouse() == "s3://acme-exports/"
    assert deployment_from_env(PRODUCTION).resources["lake"].iceberg_catalog is None
    with pytest.raises(SettingsError, match="DATA_MIGRATION_ICEBERG_CATALOG='my catalog' must be a catalog's name"):
        deployment_from_env({**PRODUCTION, "DATA_MIGRATION_ICEBERG_CATALOG": "my catalog"})


def test_production_settings(tmp_path: Path):
    deployment = deployment_from_env(
        {**PRODUCTION, "SNOWFLAKE_WAREHOUSE": "EXPORT_WH", "SNOWFLAKE_ROLE": "EXPORTER_RO"}
    )
    assert deployment.name == "production" and deployment.destination_kind == "s3"
    snowflake = deployment.resources["snowflake"]
    assert type(snowflake) is SnowflakeExportResource
    assert snowflake.warehouse == "EXPORT_WH" and snowflake.role == "EXPORTER_RO"
    store = deployment.resources["csv_io_manager"].store
    assert isinstance(store, S3ObjectStore) and store.bucket == "acme-exports"
    assert store.s3.get_client().meta.config.retries["total_max_attempts"] == 5


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"SNOWFLAKE_ACCOUNT": "acme"}, "missing: SNOWFLAKE_USER, S3_BUCKET_NAME, SNOWFLAKE_PRIVATE_KEY_PATH"),
        ({"S3_BUCKET_NAME": "acme-exports"}, "missing: SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER, SNOWFLAKE_PRIVATE_KEY_PATH"),
        ({**PRODUCTION, "S3_BUCKET_NAME": ""}, "missing: S3_BUCKET_NAME"),
        (
            {**PRODUCTION, "SNOWFLAKE_PRIVATE_KEY_PATH": ""},
            "missing: SNOWFLAKE_PRIVATE_KEY_PATH (or SNOWFLAKE_PRIVATE_KEY, or SNOWFLAKE_PASSWORD)",
        ),
    ],
)
def test_partial_settings_name_what_is_missing(env: dict, missing: str):
    with pytest.raises(SettingsError, match=missing.replace("(", r"\(").replace(")", r"\)")) as raised:
        deployment_from_env(env)
    assert "embedded default" in str(raised.value)  # and says how to get there instead


@pytest.mark.parametrize("bucket", ["AB", "my_bucket", "-acme", "a" * 64, "acme..exports"])
def test_invalid_bucket_name(bucket: str):
    with pytest.raises(SettingsError, match=f"S3_BUCKET_NAME='{bucket}' is not a valid bucket name"):
        deployment_from_env({**PRODUCTION, "S3_BUCKET_NAME": bucket})


def test_timeouts_are_always_finite():
    snowflake = deployment_from_env(PRODUCTION).resources["snowflake"]
    assert (snowflake.login_timeout, snowflake.network_timeout, snowflake.query_timeout_seconds) == (60, 300, 3600)
    snowflake = deployment_from_env(
        {**PRODUCTION, "SNOWFLAKE_NETWORK_TIMEOUT": "30", "SNOWFLAKE_QUERY_TIMEOUT": "120"}
    ).resources["snowflake"]
    assert (snowflake.network_timeout, snowflake.query_timeout_seconds) == (30, 120)
    for bad in ("0", "-5", "abc", "1.5"):
        with pytest.raises(SettingsError, match="SNOWFLAKE_NETWORK_TIMEOUT"):
            deployment_from_env({**PRODUCTION, "SNOWFLAKE_NETWORK_TIMEOUT": bad})


def test_secrets_are_env_vars_not_values():
    with_key = {**PRODUCTION, "AWS_SECRET_ACCESS_KEY": "CANARY-aws", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "CANARY-pp"}
    with_password = {**with_key, "SNOWFLAKE_PRIVATE_KEY_PATH": "", "SNOWFLAKE_PASSWORD": "CANARY-pw"}
    text = repr(deployment_from_env(with_key).resources) + repr(deployment_from_env(with_password).resources)
    for canary in ("CANARY-pw", "CANARY-aws", "CANARY-pp"):
        assert canary not in text  # resolved only at run time, from the environment


def test_password_and_key_together_is_a_clear_error():
    with pytest.raises(SettingsError, match="both SNOWFLAKE_PASSWORD and SNOWFLAKE_PRIVATE_KEY_PATH are set"):
        deployment_from_env({**PRODUCTION, "SNOWFLAKE_PASSWORD": "x"})


def test_bad_scale_factor(tmp_path: Path):
    with pytest.raises(SettingsError, match="DATA_MIGRATION_TPCH_SCALE='big'"):
        deployment_from_env({"DATA_MIGRATION_TPCH_SCALE": "big", "DATA_MIGRATION_LOCAL_DIR": str(tmp_path)})


def test_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the default does not depend on the working directory
    assert config_path({}) == DEFAULT_CONFIG_PATH and DEFAULT_CONFIG_PATH.is_file()
    assert config_path({"DATA_MIGRATION_CONFIG": "other.yaml"}) == tmp_path / "other.yaml"


def test_key_pair_authentication_reaches_snowflake(
    production_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An encrypted PKCS#8 key and passphrase, decrypted by dagster-snowflake, used by the connector.

    fakesnow does not verify the JWT, so this shows the wiring (variables -> resource -> connector
    login), not Snowflake's verification of the signature.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"CANARY-passphrase"),
        )
    )
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(path))
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "CANARY-passphrase")
    env = {k: v for k, v in production_env.items() if k != "SNOWFLAKE_PASSWORD"}
    env.update(SNOWFLAKE_PRIVATE_KEY_PATH=str(path), SNOWFLAKE_PRIVATE_KEY_PASSPHRASE="CANARY-passphrase")
    snowflake: Any = deployment_from_env(env).resources["snowflake"]
    snowflake = snowflake.process_config_and_initialize()  # resolves EnvVar as at run time
    with open_export_stream(snowflake, 'SELECT * FROM "REGION"') as stream:
        assert sum(batch.num_rows for batch in stream.batches()) == 5


def test_s3_retries_are_explicit():
    """botocore's default retry mode depends on its version, so the project sets it."""
    store = (
        deployment_from_env({**PRODUCTION, "AWS_MAX_ATTEMPTS": "7", "AWS_REGION": "eu-west-1"})
        .resources["json_io_manager"]
        .store
    )
    retries = store.s3.get_client().meta.config.retries
    assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 7)


def test_an_authenticator_no_setting_can_feed_is_refused():
    """OAuth needs a token, which no setting passes: offered, it would fail at the first sign-in."""
    env = {"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u", "S3_BUCKET_NAME": "bkt", "SNOWFLAKE_AUTHENTICATOR": "OAUTH"}
    with pytest.raises(SettingsError, match="OAuth needs a token, which no setting passes"):
        deployment_from_env(env)
    with pytest.raises(SettingsError, match="missing: SNOWFLAKE_PRIVATE_KEY_PATH"):
        deployment_from_env({**env, "SNOWFLAKE_AUTHENTICATOR": "snowflake_jwt"})  # named, but no key given
    browser = deployment_from_env({**env, "SNOWFLAKE_AUTHENTICATOR": "externalbrowser"})
    assert browser.resources["snowflake"].authenticator == "externalbrowser"
