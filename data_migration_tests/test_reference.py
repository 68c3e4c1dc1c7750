"""The reference generated from the code (issue 24): the settings page and `.env.example` from the
settings table (config/settings.py), the CLI page from `data-migration --help`, the export list
page's reference section from the list's JSON Schema. Each committed
file must equal what the code renders; to regenerate after a change:

    UPDATE_SNAPSHOTS=1 ./quickstart test data_migration_tests/test_reference.py

And the table is the code's: every variable the code reads is in it, reading one that is not
fails, and its defaults are the ones the code applies.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from data_migration import cli
from data_migration.config.schema import markdown_reference
from data_migration.config.settings import BY_NAME, Settings, UnknownSetting, env_example, settings_page
from data_migration.exports.progress import DEFAULT_INTERVAL_SECONDS
from data_migration.resources import deployment_from_env, executor_from_env, retry_policy_from_env
from data_migration.snowflake.queries import DEFAULT_QUERY_TIMEOUT_SECONDS
from data_migration.snowflake.resource import DEFAULT_TPCH_SCALE
from data_migration_tests.support import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "data_migration"
_VARIABLE = re.compile(r"^(SNOWFLAKE|AWS|S3|DATA_MIGRATION|DAGSTER)_[A-Z0-9_]+$")
# Names of that shape the code uses that are not environment variables.
NOT_VARIABLES = {
    "SNOWFLAKE_SAMPLE_DATA": "the sample database",
    "DATA_MIGRATION_EXPORTS": "the emulator's stage",
    "DATA_MIGRATION_LOADED_FILES": "the loads' ledger table",
    "DAGSTER_HOME": "read by cli.py, listed",  # in the table; the entry documents why it is special
}


def cli_page() -> str:
    """docs/cli.md: each command's --help, as a terminal 100 columns wide shows it."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        top = cli.parser()
        run = top._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
        pages = [("data-migration --help", top.format_help()), ("data-migration run --help", run.format_help())]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = previous
    lines = [
        "# The `data-migration` command",
        "",
        "<!-- Generated from data_migration/cli.py by data_migration_tests/test_reference.py -->",
        "",
        "`data-migration run` runs the export list as `dagster job execute -j all_exports` would (the exports,",
        "their loads and their checks), prints a line per export, and exits with a code a cron job can act on.",
        "The settings it reads are in [settings.md](settings.md).",
    ]
    for command, text in pages:
        lines += ["", f"## `{command}`", "", "```text", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


SCHEMA_BEGIN = "<!-- schema:begin (generated from data_migration/config/schema.py by test_reference.py) -->"
SCHEMA_END = "<!-- schema:end -->"


def export_list_page() -> str:
    """docs/export-list.md with its reference section rendered from the list's JSON Schema."""
    page = (PROJECT_ROOT / "docs" / "export-list.md").read_text()
    before, _, rest = page.partition(SCHEMA_BEGIN + "\n")
    _, _, after = rest.partition(SCHEMA_END)
    assert after, "docs/export-list.md lost its schema markers"
    return f"{before}{SCHEMA_BEGIN}\n{markdown_reference()}{SCHEMA_END}{after}"


GENERATED: dict[str, Callable[[], str]] = {
    "docs/settings.md": settings_page,
    ".env.example": env_example,
    "docs/cli.md": cli_page,
    "docs/export-list.md": export_list_page,
}


@pytest.mark.parametrize("relative", sorted(GENERATED))
def test_the_generated_reference_is_current(relative: str):
    path, rendered = PROJECT_ROOT / relative, GENERATED[relative]()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists() and path.read_text() == rendered, (
        f"{relative} is stale: UPDATE_SNAPSHOTS=1 ./quickstart test data_migration_tests/test_reference.py"
    )


def variables_in_code() -> dict[str, str]:
    """Every string constant in the package shaped like one of our variables, with where it is."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _VARIABLE.match(node.value):
                found.setdefault(node.value, f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    return found


def test_every_variable_the_code_reads_is_in_the_table():
    found = variables_in_code()
    assert "SNOWFLAKE_ACCOUNT" in found and "AWS_ENDPOINT_URL_S3" in found  # the scan sees them
    missing = {name: where for name, where in found.items() if name not in BY_NAME and name not in NOT_VARIABLES}
    assert not missing, f"read by the code but not in config/settings.py's SETTINGS: {missing}"
    # And nothing in the table is dead.
    unused = [name for name in BY_NAME if name not in found]
    assert not unused, f"in SETTINGS but never read: {unused}"


def test_reading_a_variable_the_table_lacks_fails():
    env = Settings({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_UNHEARD_OF": "x"})
    assert env.get("SNOWFLAKE_ACCOUNT") == "a"
    with pytest.raises(UnknownSetting, match="SNOWFLAKE_UNHEARD_OF"):
        env.get("SNOWFLAKE_UNHEARD_OF")
    assert env.get("SNOWFLAKE_USER") is None and Settings({"SNOWFLAKE_USER": ""}).get("SNOWFLAKE_USER") is None
    assert list(env) == ["SNOWFLAKE_ACCOUNT"]


def test_the_tables_defaults_are_the_ones_the_code_applies(tmp_path: Path):
    assert float(BY_NAME["DATA_MIGRATION_PROGRESS_SECONDS"].default) == DEFAULT_INTERVAL_SECONDS
    assert BY_NAME["DATA_MIGRATION_TPCH_SCALE"].default == DEFAULT_TPCH_SCALE
    assert int(BY_NAME["SNOWFLAKE_QUERY_TIMEOUT"].default) == DEFAULT_QUERY_TIMEOUT_SECONDS
    production = {"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u", "SNOWFLAKE_PASSWORD": "p", "S3_BUCKET_NAME": "bkt"}
    resources = deployment_from_env(production).resources
    snowflake = resources["snowflake"]
    assert snowflake.login_timeout == int(BY_NAME["SNOWFLAKE_LOGIN_TIMEOUT"].default)
    assert snowflake.network_timeout == int(BY_NAME["SNOWFLAKE_NETWORK_TIMEOUT"].default)
    assert snowflake.query_timeout_seconds == int(BY_NAME["SNOWFLAKE_QUERY_TIMEOUT"].default)
    assert resources["object_store"].part_size_mib == int(BY_NAME["DATA_MIGRATION_S3_PART_MIB"].default)
    retry = retry_policy_from_env({})
    assert retry is not None and retry.max_retries == int(BY_NAME["DATA_MIGRATION_MAX_RETRIES"].default)
    assert retry.delay == float(BY_NAME["DATA_MIGRATION_RETRY_DELAY"].default)
    assert executor_from_env({}).name == BY_NAME["DATA_MIGRATION_EXECUTOR"].default


def test_the_env_example_is_a_dotenv_file_of_the_tables_variables():
    from dotenv import dotenv_values

    values = dotenv_values(PROJECT_ROOT / ".env.example")
    assert set(values) <= set(BY_NAME) and "SNOWFLAKE_ACCOUNT" in values
    shown = {name for name, value in values.items() if BY_NAME[name].secret and value}
    assert shown == {"SNOWFLAKE_PRIVATE_KEY_PATH"}, "no secret has a value but the placeholder path to a key"
    # Copied to .env as is, it sets no variable to "": an empty AWS_PROFILE= made boto3 look for a
    # profile named "" and fail every S3 export.
    assert all(values.values()), [name for name, value in values.items() if not value]
