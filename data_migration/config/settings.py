"""The environment variables the project reads: one table (name, default, secret or not, what it
does) that resources.py reads through (`Settings`), and from which the settings page
(docs/settings.md) and `.env.example` are generated (data_migration_tests/test_reference.py
checks them, and writes them with UPDATE_SNAPSHOTS=1). A test fails when the code reads a
variable the table lacks. Where
the variables come from: the environment, and a `.env` file in the directory a command runs from
(`data-migration run` reads it and its values override the environment's; Dagster's own commands
read the same file).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

SNOWFLAKE, S3, PROJECT, DAGSTER = "Snowflake", "S3", "The project", "Dagster"


@dataclass(frozen=True)
class Setting:
    name: str
    group: str
    what: str
    default: str = ""  # as the code applies it when the variable is unset or empty ("" = none)
    secret: bool = False  # passed to the resources as an EnvVar, resolved at run time, never shown
    example: str = ""  # the value .env.example shows ("" = left empty)
    commented: bool = False  # .env.example shows it commented out


SETTINGS: tuple[Setting, ...] = (
    # Snowflake: any of ACCOUNT, USER, PASSWORD, PRIVATE_KEY(_PATH), HOST set means production.
    Setting("SNOWFLAKE_ACCOUNT", SNOWFLAKE, "Required. The account identifier, as in <account>.snowflakecomputing.com.",
            example="myorg-myaccount"),
    Setting("SNOWFLAKE_USER", SNOWFLAKE, "Required. The user to sign in as: a TYPE=SERVICE user with a read-only role.",
            example="SVC_EXPORTER"),
    Setting("SNOWFLAKE_PRIVATE_KEY_PATH", SNOWFLAKE, "Key-pair sign-in (recommended): a PKCS#8 PEM private key file.",
            secret=True, example="/path/to/rsa_key.p8"),
    Setting("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", SNOWFLAKE, "The passphrase of an encrypted private key.", secret=True),
    Setting("SNOWFLAKE_PRIVATE_KEY", SNOWFLAKE, "The PEM text of the private key itself, instead of the path.",
            secret=True, commented=True),
    Setting("SNOWFLAKE_PASSWORD", SNOWFLAKE, "Password sign-in, instead of a key (not together with one).",
            secret=True),
    Setting("SNOWFLAKE_AUTHENTICATOR", SNOWFLAKE,
            "How to sign in, when not implied: snowflake (password), snowflake_jwt (key pair), "
            "externalbrowser (single sign-on in a browser, for a person at a desk) or username_password_mfa. "
            "OAuth is not offered: no setting passes a token."),
    Setting("SNOWFLAKE_WAREHOUSE", SNOWFLAKE, "The warehouse that runs the export queries.", example="EXPORT_WH"),
    Setting("SNOWFLAKE_DATABASE", SNOWFLAKE, "The default database for unqualified table names.",
            example="SNOWFLAKE_SAMPLE_DATA"),
    Setting("SNOWFLAKE_SCHEMA", SNOWFLAKE, "The default schema for unqualified table names.", example="TPCH_SF1"),
    Setting("SNOWFLAKE_ROLE", SNOWFLAKE, "The role exports use.", example="EXPORTER_RO"),
    Setting("SNOWFLAKE_LOAD_ROLE", SNOWFLAKE,
            "The role loads and DataFrame assets write with (exports keep SNOWFLAKE_ROLE)."),
    Setting("SNOWFLAKE_LOAD_DATABASE", SNOWFLAKE,
            "Where loads write a target given without its database (default: SNOWFLAKE_DATABASE).",
            example="ANALYTICS"),
    Setting("SNOWFLAKE_LOAD_SCHEMA", SNOWFLAKE,
            "Where loads write a target given without its schema (default: SNOWFLAKE_SCHEMA).",
            example="STAGING"),
    Setting("SNOWFLAKE_EXPORT_STAGE", SNOWFLAKE,
            "For method: unload, and loads: a named external stage over the bucket's root."),
    Setting("SNOWFLAKE_HOST", SNOWFLAKE, "A non-default endpoint: private link, a proxy, or an emulator in tests."),
    Setting("SNOWFLAKE_PORT", SNOWFLAKE, "The endpoint's port.", default="443"),
    Setting("SNOWFLAKE_PROTOCOL", SNOWFLAKE, "https or http (an emulator).", default="https"),
    Setting("SNOWFLAKE_LOGIN_TIMEOUT", SNOWFLAKE, "Seconds to sign in (always finite).", default="60", example="60"),
    Setting("SNOWFLAKE_NETWORK_TIMEOUT", SNOWFLAKE, "Seconds for each network request.", default="300",
            example="300"),
    Setting("SNOWFLAKE_QUERY_TIMEOUT", SNOWFLAKE, "Seconds for each export query; Snowflake cancels it after.",
            default="3600", example="3600"),
    # S3
    Setting("S3_BUCKET_NAME", S3, "Required. The bucket; every export's s3_path is a key in it.",
            example="my-export-bucket"),
    Setting("AWS_ACCESS_KEY_ID", S3,
            "Credentials; without them, boto3's usual chain (AWS_PROFILE, an instance role, SSO).", secret=True),
    Setting("AWS_SECRET_ACCESS_KEY", S3, "The secret of AWS_ACCESS_KEY_ID.", secret=True),
    Setting("AWS_SESSION_TOKEN", S3, "Temporary credentials' token.", secret=True),
    Setting("AWS_PROFILE", S3, "A named profile of ~/.aws/config to take credentials from."),
    Setting("AWS_REGION", S3, "The bucket's region.", example="us-east-1"),
    Setting("AWS_DEFAULT_REGION", S3, "The bucket's region, when AWS_REGION is unset."),
    Setting("AWS_ENDPOINT_URL_S3", S3, "An S3-compatible endpoint (MinIO, R2, …), for S3 only."),
    Setting("AWS_ENDPOINT_URL", S3, "An S3-compatible endpoint, when AWS_ENDPOINT_URL_S3 is unset."),
    Setting("AWS_REQUEST_CHECKSUM_CALCULATION", S3,
            "when_required for S3-compatible stores that reject upload checksums (sizes are still verified).",
            default="when_supported", example="when_required", commented=True),
    Setting("AWS_MAX_ATTEMPTS", S3, "Attempts per S3 request (retry mode standard).", default="5", example="5"),
    # The project
    Setting("DATA_MIGRATION_CONFIG", PROJECT, "Another export list than config/export_tables.yaml.",
            default="config/export_tables.yaml"),
    Setting("DATA_MIGRATION_LOCAL_DIR", PROJECT, "The embedded default's folder (emulator data, the bucket folder).",
            default=".local"),
    Setting("DATA_MIGRATION_ICEBERG_CATALOG", PROJECT,
            "file_type iceberg: the pyiceberg catalog to use, by name, configured as pyiceberg reads one "
            "(.pyiceberg.yaml, or PYICEBERG_CATALOG__<NAME>__<PROPERTY> variables). Unset: a SQLite catalog in "
            "DATA_MIGRATION_LOCAL_DIR, its warehouse the bucket (docs/table-formats.md).", commented=True,
            example="glue"),
    Setting("DATA_MIGRATION_TPCH_SCALE", PROJECT, "The TPC-H scale factor of the embedded sample data.",
            default="0.01", example="0.01"),
    Setting("DATA_MIGRATION_UI_URL", PROJECT, "The Dagster UI, for links in failure alerts and in data-migration run.",
            default="http://127.0.0.1:3000"),
    Setting("DATA_MIGRATION_ALERT_EMAIL_TO", PROJECT,
            "Email a failed run's alert to these addresses (comma-separated), with Dagster's SMTP sender."),
    Setting("DATA_MIGRATION_ALERT_EMAIL_FROM", PROJECT,
            "The alert email's sender address (and the SMTP user by default)."),
    Setting("DATA_MIGRATION_SMTP_HOST", PROJECT, "The SMTP server that sends the alert email."),
    Setting("DATA_MIGRATION_SMTP_PORT", PROJECT, "Its port (default 465 for SSL, 587 for STARTTLS)."),
    Setting("DATA_MIGRATION_SMTP_TYPE", PROJECT, "SSL or STARTTLS.", default="SSL"),
    Setting("DATA_MIGRATION_SMTP_USER", PROJECT, "The SMTP user, if not the sender address."),
    Setting("DATA_MIGRATION_SMTP_PASSWORD", PROJECT, "The SMTP user's password.", secret=True),
    Setting("DATA_MIGRATION_ALERT_WEBHOOK_URL", PROJECT,
            "Post a failed run's alert to this URL as Slack's {\"text\": …} (a Slack incoming webhook, or "
            "anything that takes its payload).", secret=True),
    Setting("DATA_MIGRATION_PREVIEW", PROJECT,
            "on: each export's materialization shows its first 10 rows; off: none, so no row value reaches "
            "Dagster's event log (an export's preview: false does it for one).", default="on"),
    Setting("DATA_MIGRATION_PROGRESS_SECONDS", PROJECT,
            "How often a streaming export logs rows, MB and rate (0: after every batch).", default="5"),
    Setting("DATA_MIGRATION_S3_PART_MIB", PROJECT, "Multipart upload part size in MiB (at least 5).", default="16"),
    Setting("DATA_MIGRATION_MAX_RETRIES", PROJECT, "Retries of an export after a transient failure (0: none).",
            default="3"),
    Setting("DATA_MIGRATION_RETRY_DELAY", PROJECT, "Seconds before the first retry; doubled each retry, with jitter.",
            default="10"),
    Setting("DATA_MIGRATION_EXECUTOR", PROJECT,
            "in_process (a run's exports one after another in one process) or multiprocess (each in its own).",
            default="in_process"),
    Setting("DATA_MIGRATION_MAX_CONCURRENT", PROJECT, "multiprocess only: exports at once in one run.",
            default="the number of CPUs"),
    # Dagster's own
    Setting("DAGSTER_HOME", DAGSTER,
            "Dagster's instance folder: run history and materializations, which the UI shows and skip_unchanged "
            "compares with. Unset, data-migration run uses a temporary instance and dagster dev a folder of its own."),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}


class UnknownSetting(RuntimeError):
    """The code read a variable the table lacks: add it to SETTINGS. (Not a KeyError, which
    Mapping.get would take for an unset variable.)"""


class Settings(Mapping[str, str]):
    """The environment as the code reads it: only the table's variables, an empty value as unset,
    and `value()` with the table's default."""

    def __init__(self, env: Mapping[str, str]):
        self._env: Mapping[str, str] = env._env if isinstance(env, Settings) else env

    def __getitem__(self, name: str) -> str:
        if name not in BY_NAME:
            raise UnknownSetting(f"{name} is not in data_migration/config/settings.py's SETTINGS")
        value = self._env.get(name)
        if not value:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name in BY_NAME if self._env.get(name))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def value(self, name: str) -> str:
        """The variable's value, or the table's default."""
        return self.get(name) or BY_NAME[name].default


def settings_page() -> str:
    lines = [
        "# Settings",
        "",
        "<!-- Generated from data_migration/config/settings.py by data_migration_tests/test_reference.py "
        "(UPDATE_SNAPSHOTS=1 ./quickstart test data_migration_tests/test_reference.py) -->",
        "",
        "Every environment variable the project reads. They come from the environment and from a `.env` file",
        "(copy [`.env.example`](../.env.example)) in the directory a command runs in: the project root for",
        "`./quickstart`, which changes to it; the current directory for `data-migration` and Dagster's own",
        "commands. A `.env`'s values override the environment's. With no Snowflake variable and no",
        "`S3_BUCKET_NAME`, the project runs on the [embedded default](embedded-default.md); setting some of the",
        "required ones but not all is an error that names the missing ones. Secret values are passed to",
        "Dagster as `EnvVar`s: resolved when a run starts, never shown in the UI or the logs.",
    ]
    for group in (SNOWFLAKE, S3, PROJECT, DAGSTER):
        lines += ["", f"## {group}", "", "| Variable | Default | Secret | What it does |", "|---|---|---|---|"]
        for setting in SETTINGS:
            if setting.group == group:
                default = f"`{setting.default}`" if setting.default else ""
                lines.append(f"| `{setting.name}` | {default} | {'yes' if setting.secret else ''} | {setting.what} |")
    return "\n".join(lines) + "\n"


def env_example() -> str:
    lines = [
        "# Generated from data_migration/config/settings.py; every variable is described in docs/settings.md.",
        "# Copy to .env in the directory you run commands from, and fill in to export from your own Snowflake",
        "# account to your own bucket. Leave every SNOWFLAKE_* variable and S3_BUCKET_NAME unset to run on the",
        "# embedded default instead. A .env's values override the environment's.",
    ]
    for group in (SNOWFLAKE, S3, PROJECT):
        lines += ["", f"# --- {group} " + "-" * (96 - len(group))]
        for setting in SETTINGS:
            if setting.group == group:
                lines.append(f"# {setting.what}")
                # Unset unless given a value: an empty `NAME=` in a .env would set NAME to "" (boto3, for
                # one, then looks for a profile named "").
                off = setting.commented or not setting.example
                lines.append(f"{'# ' if off else ''}{setting.name}={setting.example}")
    return "\n".join(lines) + "\n"
