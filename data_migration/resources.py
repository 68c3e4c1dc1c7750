"""Which Snowflake and which bucket: chosen once, from the environment. The only module that reads it.

Two deployments share every line of export code and differ only in these resources:
- production: SNOWFLAKE_* and S3_BUCKET_NAME (and AWS_*) are set: dagster-snowflake's
  SnowflakeResource and dagster-aws's S3Resource, secrets through EnvVar so that they are
  resolved at run time and never shown in the UI;
- embedded default: none of them is set: an in-process Snowflake emulator holding TPC-H sample
  data, and a local folder standing in for the bucket.
Exports to tables (iceberg, delta) reach the same bucket or folder through `lake`
(exports/lake.py), with the Iceberg catalog DATA_MIGRATION_ICEBERG_CATALOG names, or a SQLite one
in the local folder.
Setting some production variables but not all is an error naming the missing ones, never a
silent fall-back to local storage.

Loads and users' DataFrame assets write, so they get resources of their own: `snowflake_load`
(the same account, under SNOWFLAKE_LOAD_ROLE when it is set) and `snowflake_io_manager`
(dagster-snowflake-pandas', see loads/dataframes.py).

It also chooses how a run executes its steps: in one process (the default), or one process per
step (DATA_MIGRATION_EXECUTOR=multiprocess, at most DATA_MIGRATION_MAX_CONCURRENT at a time).
How many exports query Snowflake at once across all runs is the instance's limit on the
`snowflake_exports` pool (conventions.py), not a setting here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dagster import (
    Backoff,
    EnvVar,
    ExecutorDefinition,
    Jitter,
    RetryPolicy,
    in_process_executor,
    multiprocess_executor,
)
from dagster_aws.s3 import S3Resource

from data_migration.config import DEFAULT_CONFIG_PATH
from data_migration.config.names import SqlError, parse_object_name
from data_migration.config.settings import BY_NAME, Settings
from data_migration.exports.io_managers import export_io_managers
from data_migration.exports.lake import LakeAccess
from data_migration.exports.metadata import PREVIEW_ROWS
from data_migration.exports.tables import table_io_managers
from data_migration.files.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from data_migration.loads.dataframes import IO_MANAGER_KEY, EmbeddedSnowflakePandasIOManager, SnowflakePandasIOManager
from data_migration.local import emulator
from data_migration.snowflake.resource import EmbeddedSnowflakeResource, SnowflakeExportResource
from data_migration.snowflake.tags import QUERY_TAG

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_DIR = PROJECT_ROOT / ".local"

# Any of these set means "I want production"; AWS_* alone do not, since many machines set them.
_PRODUCTION_SIGNALS = (
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_PRIVATE_KEY_PATH",
    "SNOWFLAKE_PRIVATE_KEY",
    "SNOWFLAKE_HOST",
    "S3_BUCKET_NAME",
)
_SECRET_FIELDS = (
    ("SNOWFLAKE_PASSWORD", "password"),
    ("SNOWFLAKE_PRIVATE_KEY", "private_key"),
    ("SNOWFLAKE_PRIVATE_KEY_PATH", "private_key_path"),
    ("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "private_key_password"),
)
_PLAIN_FIELDS = (
    ("SNOWFLAKE_WAREHOUSE", "warehouse"),
    ("SNOWFLAKE_DATABASE", "database"),
    ("SNOWFLAKE_SCHEMA", "schema"),
    ("SNOWFLAKE_ROLE", "role"),
    ("SNOWFLAKE_AUTHENTICATOR", "authenticator"),
)
# The connector's authenticators that a setting here can feed: a password, a key pair, a browser
# (a person at a desk), or a password with MFA. OAUTH needs a token, which no setting passes.
AUTHENTICATORS = ("snowflake", "snowflake_jwt", "externalbrowser", "username_password_mfa")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CATALOG_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # a pyiceberg catalog's name, as PYICEBERG_CATALOG__<NAME>__ spells it
# Every session works in UTC, as the schedules and partition keys do: CURRENT_DATE in a query and
# a partition's bounds compared with a DATE, TIMESTAMP_LTZ or TIMESTAMP_TZ column all mean UTC.
SESSION_TIMEZONE = "UTC"
# The connector's Arrow results turn a NUMBER with a scale that Snowflake sent in an integer chunk
# into float64 (1234567890.123456789 arrives as ...717) unless the connection asks for decimals:
# the connection parameter arrow_number_to_decimal (connector's connection.py DEFAULT_CONFIGURATION).
# The exports read every result through Arrow, so each of their connections asks.
EXACT_NUMBERS: dict[str, Any] = {"arrow_number_to_decimal": True}


class SettingsError(ValueError):
    """The environment asks for something inconsistent; the message names the variables."""


@dataclass(frozen=True)
class Deployment:
    name: str  # "production" or "embedded"
    resources: dict[str, Any]
    destination_kind: str  # an asset kind: "s3" or "local"
    retry_policy: RetryPolicy | None = None
    executor: ExecutorDefinition = in_process_executor


EXECUTORS = ("in_process", "multiprocess")


def executor_from_env(env: Mapping[str, str]) -> ExecutorDefinition:
    """DATA_MIGRATION_EXECUTOR: in_process (default: the run's exports one after another in its
    own process, paying the imports once) or multiprocess (each export in a process of its own,
    several at once: DATA_MIGRATION_MAX_CONCURRENT, default the number of CPUs)."""
    env = Settings(env)
    chosen = env.value("DATA_MIGRATION_EXECUTOR")
    if chosen not in EXECUTORS:
        raise SettingsError(f"DATA_MIGRATION_EXECUTOR={chosen!r} must be one of {', '.join(EXECUTORS)}")
    if chosen == "in_process":
        if env.get("DATA_MIGRATION_MAX_CONCURRENT"):
            raise SettingsError(
                "DATA_MIGRATION_MAX_CONCURRENT applies to DATA_MIGRATION_EXECUTOR=multiprocess; an in-process "
                "run exports one at a time (limit exports across runs with the snowflake_exports pool instead)"
            )
        return in_process_executor
    if not env.get("DATA_MIGRATION_MAX_CONCURRENT"):
        return multiprocess_executor
    limit = _positive_int(env, "DATA_MIGRATION_MAX_CONCURRENT")
    return multiprocess_executor.configured({"max_concurrent": limit}, name="multiprocess")


def retry_policy_from_env(env: Mapping[str, str]) -> RetryPolicy | None:
    """For transient failures only (see errors.py): DATA_MIGRATION_MAX_RETRIES (default 3) more
    attempts, waiting DATA_MIGRATION_RETRY_DELAY seconds (default 10) doubled each time, +/- jitter."""
    env = Settings(env)
    raw_retries = env.value("DATA_MIGRATION_MAX_RETRIES")
    raw_delay = env.value("DATA_MIGRATION_RETRY_DELAY")
    try:
        retries, delay = int(raw_retries), float(raw_delay)
        if retries < 0 or delay < 0:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"DATA_MIGRATION_MAX_RETRIES={raw_retries!r} and DATA_MIGRATION_RETRY_DELAY={raw_delay!r} "
            "must be a whole number and a number of seconds, neither negative"
        ) from None
    if retries == 0:
        return None
    return RetryPolicy(max_retries=retries, delay=delay, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    """The export list: DATA_MIGRATION_CONFIG, else config/export_tables.yaml in the project."""
    chosen = Settings(env).get("DATA_MIGRATION_CONFIG")
    return Path(chosen).expanduser().resolve() if chosen else DEFAULT_CONFIG_PATH


def ui_url(env: Mapping[str, str] = os.environ) -> str:
    """Where the Dagster UI is, for links in alerts: DATA_MIGRATION_UI_URL, else dagster dev's."""
    return Settings(env).value("DATA_MIGRATION_UI_URL")


def deployment_from_env(env: Mapping[str, str] = os.environ) -> Deployment:
    env = Settings(env)  # reads only the variables of config/settings.py's table
    deployment = _production(env) if any(env.get(name) for name in _PRODUCTION_SIGNALS) else _embedded(env)
    return replace(deployment, retry_policy=retry_policy_from_env(env), executor=executor_from_env(env))


def _production(env: Mapping[str, str]) -> Deployment:
    missing = [name for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "S3_BUCKET_NAME") if not env.get(name)]
    authenticator = (env.get("SNOWFLAKE_AUTHENTICATOR") or "").lower()
    if authenticator and authenticator not in AUTHENTICATORS:
        raise SettingsError(
            f"SNOWFLAKE_AUTHENTICATOR={env['SNOWFLAKE_AUTHENTICATOR']!r} is not one this project can sign in with: "
            f"{', '.join(AUTHENTICATORS)}"
            + (" (OAuth needs a token, which no setting passes: use a key pair, SNOWFLAKE_PRIVATE_KEY_PATH)"
               if authenticator.startswith("oauth") else "")
        )  # fmt: skip
    has_auth = (
        any(env.get(name) for name in ("SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_PATH", "SNOWFLAKE_PRIVATE_KEY"))
        or authenticator == "externalbrowser"
    )
    if not has_auth:
        missing.append("SNOWFLAKE_PRIVATE_KEY_PATH (or SNOWFLAKE_PRIVATE_KEY, or SNOWFLAKE_PASSWORD)")
    if missing:
        given = ", ".join(name for name in _PRODUCTION_SIGNALS if env.get(name))
        raise SettingsError(
            f"Snowflake/S3 settings are incomplete: {given} set, but missing: {', '.join(missing)}. "
            "Set them (see .env.example), or unset all SNOWFLAKE_* variables and S3_BUCKET_NAME "
            "to run on the embedded default."
        )
    key_vars = [name for name in ("SNOWFLAKE_PRIVATE_KEY_PATH", "SNOWFLAKE_PRIVATE_KEY") if env.get(name)]
    if env.get("SNOWFLAKE_PASSWORD") and key_vars:
        raise SettingsError(
            f"both SNOWFLAKE_PASSWORD and {' and '.join(key_vars)} are set: choose one way to sign "
            "in (key-pair is the one Snowflake keeps allowing for service users) and unset the other"
        )
    if len(key_vars) == 2:
        raise SettingsError("both SNOWFLAKE_PRIVATE_KEY_PATH and SNOWFLAKE_PRIVATE_KEY are set: unset one")
    bucket = env["S3_BUCKET_NAME"]
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise SettingsError(
            f"S3_BUCKET_NAME={bucket!r} is not a valid bucket name (3-63 characters: lower-case "
            "letters, digits, '.' and '-', starting and ending with a letter or digit)"
        )

    snowflake_args: dict[str, Any] = {"account": env["SNOWFLAKE_ACCOUNT"], "user": env["SNOWFLAKE_USER"]}
    for variable, field in _SECRET_FIELDS:
        if env.get(variable):
            snowflake_args[field] = EnvVar(variable)
    for variable, field in _PLAIN_FIELDS:
        if env.get(variable):
            snowflake_args[field] = env[variable]
    stage = env.get("SNOWFLAKE_EXPORT_STAGE")
    if stage:
        try:
            snowflake_args["export_stage"] = ".".join(part.quoted() for part in parse_object_name(stage))
        except SqlError as error:
            raise SettingsError(f"SNOWFLAKE_EXPORT_STAGE={stage!r}: {error}") from None
    connection: dict[str, Any] = {
        "session_parameters": {"QUERY_TAG": QUERY_TAG, "TIMEZONE": SESSION_TIMEZONE},
        **EXACT_NUMBERS,
    }
    if env.get("SNOWFLAKE_HOST"):
        connection["host"] = env["SNOWFLAKE_HOST"]
    if env.get("SNOWFLAKE_PORT"):
        connection["port"] = _positive_int(env, "SNOWFLAKE_PORT")
    if env.get("SNOWFLAKE_PROTOCOL"):
        connection["protocol"] = env["SNOWFLAKE_PROTOCOL"]
    snowflake = SnowflakeExportResource(
        **snowflake_args,
        **_timeouts(env),
        autocommit=True,
        additional_snowflake_connection_args=connection,
    )
    # Loads write; exports only read. With SNOWFLAKE_LOAD_ROLE, loads sign in under that role and
    # the exports keep theirs (read-only, ideally).
    load_role = env.get("SNOWFLAKE_LOAD_ROLE")
    if load_role:
        try:
            parse_object_name(load_role)
        except SqlError as error:
            raise SettingsError(f"SNOWFLAKE_LOAD_ROLE={load_role!r}: {error}") from None
    # Where loads write unqualified targets (a writable place; exports may read a shared,
    # read-only database): SNOWFLAKE_LOAD_DATABASE and SNOWFLAKE_LOAD_SCHEMA, by default the
    # exports' own. The stage then has to be named in full, or it would resolve there too.
    load_place: dict[str, str] = {}
    placed: list[str] = []
    for variable, field in (("SNOWFLAKE_LOAD_DATABASE", "database"), ("SNOWFLAKE_LOAD_SCHEMA", "schema")):
        if env.get(variable):
            placed.append(variable)
            try:
                if len(parse_object_name(env[variable])) != 1:
                    raise SqlError("is not one name")
            except SqlError as error:
                raise SettingsError(f"{variable}={env[variable]!r}: {error}") from None
            load_place[field] = env[variable]
    if load_place and stage and len(parse_object_name(stage)) != 3:
        raise SettingsError(
            f"SNOWFLAKE_EXPORT_STAGE={stage!r}: write it in full (database.schema.stage) when "
            f"{' and '.join(placed)} give loads a place of "
            "their own, or loads would look for the stage there"
        )
    snowflake_load = SnowflakeExportResource(
        **{**snowflake_args, **({"role": load_role} if load_role else {}), **load_place},
        **_timeouts(env),
        autocommit=True,
        additional_snowflake_connection_args=connection,
    )

    s3_args: dict[str, Any] = {
        "region_name": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        # Explicit, since botocore's default retry mode depends on its version. AWS_MAX_ATTEMPTS
        # counts every attempt, as boto3 itself reads it; botocore's retries config counts the
        # retries after the first.
        "max_attempts": _positive_int(env, "AWS_MAX_ATTEMPTS") - 1,
    }
    for variable, field in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if env.get(variable):
            s3_args[field] = EnvVar(variable)
    if env.get("AWS_PROFILE"):
        s3_args["profile_name"] = env["AWS_PROFILE"]
    part_mib = _positive_int(env, "DATA_MIGRATION_S3_PART_MIB")
    if part_mib < 5:
        raise SettingsError(f"DATA_MIGRATION_S3_PART_MIB={part_mib} is below S3's minimum part size of 5 (MiB)")
    # botocore reads AWS_REQUEST_CHECKSUM_CALCULATION itself; the store must then not ask for a
    # checksum explicitly either, or S3-compatible stores that reject them would still get one.
    checksums = Settings(env).value("AWS_REQUEST_CHECKSUM_CALCULATION").lower()
    if checksums not in ("when_supported", "when_required"):
        raise SettingsError(
            f"AWS_REQUEST_CHECKSUM_CALCULATION={checksums!r} must be when_supported (the default) or "
            "when_required (for S3-compatible stores that reject upload checksums)"
        )
    store = S3ObjectStore(
        s3=S3Resource(**s3_args), bucket=bucket, part_size_mib=part_mib, send_checksums=checksums == "when_supported"
    )
    # Users' DataFrame assets (loads/dataframes.py): the library needs a database to name tables in.
    dataframes = None
    if env.get("SNOWFLAKE_DATABASE"):
        secrets = {field: EnvVar(variable) for variable, field in _SECRET_FIELDS if env.get(variable)}
        plain = {field: env[variable] for variable, field in _PLAIN_FIELDS if env.get(variable) and field != "schema"}
        dataframes = SnowflakePandasIOManager(
            account=env["SNOWFLAKE_ACCOUNT"],
            user=env["SNOWFLAKE_USER"],
            # They write, as loads do: under the load role, in the loads' place.
            **{**plain, **secrets, **({"role": load_role} if load_role else {}), **_only(load_place, "database")},
            **(
                {"schema_": load_place.get("schema") or env["SNOWFLAKE_SCHEMA"]}
                if load_place.get("schema") or env.get("SNOWFLAKE_SCHEMA")
                else {}
            ),
            additional_snowflake_connection_args=connection,
        )
    return Deployment(
        "production", _resources(snowflake, store, env, snowflake_load, dataframes), destination_kind="s3"
    )


def _only(values: Mapping[str, str], *names: str) -> dict[str, str]:
    return {name: values[name] for name in names if name in values}


def _embedded(env: Mapping[str, str]) -> Deployment:
    local_dir = Path(env.get("DATA_MIGRATION_LOCAL_DIR") or DEFAULT_LOCAL_DIR).expanduser().resolve()
    scale = Settings(env).value("DATA_MIGRATION_TPCH_SCALE")
    try:
        if float(scale) <= 0:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"DATA_MIGRATION_TPCH_SCALE={scale!r} must be a positive number such as 0.01 or 1"
        ) from None
    embedded = dict(
        account="embedded",
        user="data_migration",
        password="embedded-emulator-accepts-any-password",  # noqa: S106 - not a secret: the emulator takes any
        database=emulator.DATABASE,
        schema=emulator.SCHEMA,
        local_dir=str(local_dir),
        tpch_scale=scale,
        export_stage=f'"{emulator.EXPORT_STAGE}"',  # the emulator's stage over the bucket folder
        autocommit=True,
        **_timeouts(env),
        additional_snowflake_connection_args={
            "session_parameters": {
                "QUERY_TAG": QUERY_TAG,
                "TIMEZONE": SESSION_TIMEZONE,
                "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
            }
        },
    )
    dataframe_connection = embedded["additional_snowflake_connection_args"]
    embedded["additional_snowflake_connection_args"] = {**dataframe_connection, **EXACT_NUMBERS}
    snowflake = EmbeddedSnowflakeResource(**embedded)
    store = LocalObjectStore(root=str(emulator.bucket_dir(local_dir)))
    dataframes = EmbeddedSnowflakePandasIOManager(
        database=emulator.DATABASE,
        schema_=emulator.SCHEMA,
        **{name: embedded[name] for name in ("account", "user", "password", "local_dir", "tpch_scale")},
        additional_snowflake_connection_args=dataframe_connection,
    )
    return Deployment(
        "embedded",
        _resources(snowflake, store, env, EmbeddedSnowflakeResource(**embedded), dataframes),
        destination_kind="local",
    )


def _resources(
    snowflake: SnowflakeExportResource,
    store: ObjectStore,
    env: Mapping[str, str],
    snowflake_load: SnowflakeExportResource,
    dataframes: SnowflakePandasIOManager | None,
) -> dict[str, Any]:
    raw = Settings(env).value("DATA_MIGRATION_PROGRESS_SECONDS")
    try:
        progress_seconds = float(raw)
        if not progress_seconds >= 0:  # also refuses nan
            raise ValueError
    except ValueError:
        raise SettingsError(f"DATA_MIGRATION_PROGRESS_SECONDS={raw!r} must be a number of seconds, 0 or more") from None
    preview = Settings(env).value("DATA_MIGRATION_PREVIEW")
    if preview not in ("on", "off"):
        raise SettingsError(f"DATA_MIGRATION_PREVIEW={preview!r} must be on or off")
    lake = _lake(store, env)
    return {
        "snowflake": snowflake,
        "snowflake_load": snowflake_load,
        "object_store": store,
        "lake": lake,
        **export_io_managers(store, progress_seconds, PREVIEW_ROWS if preview == "on" else 0),
        **table_io_managers(lake, progress_seconds),
        **({IO_MANAGER_KEY: dataframes} if dataframes is not None else {}),
    }


def _lake(store: ObjectStore, env: Mapping[str, str]) -> LakeAccess:
    """The tables' access to the store and the Iceberg catalog (exports/lake.py): the catalog
    DATA_MIGRATION_ICEBERG_CATALOG names, else a SQLite one in the local folder."""
    catalog = Settings(env).get("DATA_MIGRATION_ICEBERG_CATALOG")
    if catalog and not _CATALOG_NAME.match(catalog):
        raise SettingsError(
            f"DATA_MIGRATION_ICEBERG_CATALOG={catalog!r} must be a catalog's name as .pyiceberg.yaml lists it "
            "(letters, digits, _ and -)"
        )
    local_dir = Path(env.get("DATA_MIGRATION_LOCAL_DIR") or DEFAULT_LOCAL_DIR).expanduser().resolve()
    return LakeAccess(store=store, iceberg_catalog=catalog or None, catalog_dir=str(local_dir / "iceberg"))


def _timeouts(env: Mapping[str, str]) -> dict[str, int]:
    # Always finite: with network_timeout unset the connector retries a dead connection forever.
    return {
        "login_timeout": _positive_int(env, "SNOWFLAKE_LOGIN_TIMEOUT"),
        "network_timeout": _positive_int(env, "SNOWFLAKE_NETWORK_TIMEOUT"),
        "query_timeout_seconds": _positive_int(env, "SNOWFLAKE_QUERY_TIMEOUT"),
    }


def _positive_int(env: Mapping[str, str], name: str) -> int:
    """The variable as a whole number above 0, or its default in config/settings.py's table."""
    raw = Settings(env).get(name)
    if not raw:
        return int(BY_NAME[name].default)
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} must be a whole number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0")
    return value
