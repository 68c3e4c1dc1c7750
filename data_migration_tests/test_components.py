"""`data_migration.ExportsComponent` (issue 23): lists of their own in `defs.yaml` files, with the
default list, in one code location, through the real `dg` and `dagster` commands on a copy of the
project (so that scaffolding writes nowhere in the repository).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from data_migration.components import ExportsComponent
from data_migration.config import ConfigError, load_exports, parse_exports
from data_migration.definitions import combined, definitions_for, list_definitions
from data_migration.local import emulator
from data_migration_tests.support import EXAMPLE_CONFIG, PROJECT_ROOT, environment_without_settings, local_folder

BIN = Path(sys.executable).parent

# Where the embedded default's tables are: source assets are keyed by the full name.
SOURCES = f"snowflake/{emulator.DATABASE}/{emulator.SCHEMA}"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tpch_dir: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the project's tracked files, imported in place of the repository (PYTHONPATH), on
    the embedded default with a DAGSTER_HOME of its own."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        source = PROJECT_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(source.read_bytes())
    home = root / ".dagster_home"
    home.mkdir()
    env = {
        **environment_without_settings(),
        "PYTHONPATH": str(root),
        "DAGSTER_HOME": str(home),
        "DATA_MIGRATION_LOCAL_DIR": str(local_folder(root, tpch_dir)),
    }
    yield root, env


def run(project: tuple[Path, dict[str, str]], *command: str) -> subprocess.CompletedProcess:
    root, env = project
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=root, env=env, capture_output=True, text=True)


def test_dg_lists_the_component_and_its_schema_describes_every_field():
    done = subprocess.run([str(BIN / "dg"), "list", "components"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data_migration.ExportsComponent" in done.stdout
    schema = ExportsComponent.model_json_schema()
    undescribed = []
    for section in ("exports", "loads"):
        items = schema["properties"][section]["items"]

        def walk(properties: dict, where: str) -> None:
            for name, field in properties.items():
                if not field.get("description"):
                    undescribed.append(f"{where}.{name}")
                nested = [option for option in field.get("anyOf", [field]) if "properties" in option]
                for option in nested:
                    walk(option["properties"], f"{where}.{name}")

        walk(items["properties"], section)
    assert not undescribed, undescribed
    assert {"table", "s3_path", "skip_unchanged", "freshness"} <= set(
        schema["properties"]["exports"]["items"]["properties"]
    )


def test_scaffold_check_list_and_materialize_a_list_of_its_own(project: tuple[Path, dict[str, str]]):
    root, _ = project
    done = run(project, "dg", "scaffold", "defs", "data_migration.ExportsComponent", "nightly")
    assert done.returncode == 0, done.stderr[-3000:]
    written = root / "data_migration" / "lists" / "nightly" / "defs.yaml"
    assert yaml.safe_load(written.read_text())["type"] == "data_migration.ExportsComponent"
    checked = run(project, "dg", "check", "defs")
    assert checked.returncode == 0, checked.stderr[-3000:]
    listed = json.loads(run(project, "dg", "list", "defs", "--json").stdout)
    assets = sorted(asset["asset_key"] for asset in listed["assets"])
    assert {"NATION", "REGION", "ORDERS", f"{SOURCES}/NATION", f"{SOURCES}/ORDERS"} <= set(assets)
    jobs = {job["name"] for job in listed["jobs"]}
    assert {"all_exports", "nightly_all_exports", "nightly_exports_0_5_x_x_x_job"} <= jobs
    assert {sensor["name"] for sensor in listed["sensors"]} == {"export_failure_alert"}  # once
    # The default list still loads as today, beside it, for every command.
    for _ in range(2):
        done = run(project, "dagster", "asset", "materialize", "--select", "NATION", "-m", "data_migration")
        assert done.returncode == 0, done.stderr[-3000:]
    assert "Export complete: 25 rows" not in done.stderr and "Unchanged: NATION" in done.stderr, done.stderr[-3000:]
    done = run(project, "dagster", "asset", "materialize", "--select", "ORDERS", "-m", "data_migration")
    assert done.returncode == 0 and "Export complete: 15000 rows" in done.stderr, done.stderr[-3000:]


def test_a_list_file_beside_the_defs_yaml_and_post_processing(project: tuple[Path, dict[str, str]]):
    root, _ = project
    folder = root / "data_migration" / "lists" / "team-b"
    folder.mkdir(parents=True)
    (folder / "tables.yaml").write_text(
        "exports:\n  - table: SUPPLIER\n    s3_path: exports/team_b/supplier.parquet\n"
        "  - table: ORDERS_B\n    s3_path: exports/team_b/orders.parquet\n    query: SELECT * FROM ORDERS\n"
    )
    (folder / "defs.yaml").write_text(
        "type: data_migration.ExportsComponent\n"
        "attributes:\n  path: tables.yaml\n"
        "post_processing:\n  assets:\n    - target: '*'\n      attributes:\n        group_name: team_b\n"
        "        tags:\n          team: b\n"
        "        automation_condition: \"{{ automation_condition.on_cron('0 5 * * *') }}\"\n"
    )
    listed = run(project, "dg", "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    keys = [asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]]
    assets = {asset["asset_key"]: asset for asset in json.loads(listed.stdout)["assets"]}
    for key in ("SUPPLIER", "ORDERS_B"):
        assert assets[key]["group_name"] == "team_b", assets[key]
        assert {"key": "team", "value": "b"} in assets[key]["tags"], assets[key]
        assert assets[key]["automation_condition"]["label"] == "on_cron(0 5 * * *, UTC)", assets[key]
    assert "team_b_all_exports" in {job["name"] for job in json.loads(listed.stdout)["jobs"]}
    # ORDERS, read by both lists, is one source asset, keyed by its full name.
    assert keys.count(f"{SOURCES}/ORDERS") == 1
    (folder / "defs.yaml").unlink()
    (folder / "tables.yaml").unlink()
    folder.rmdir()


def test_a_mistake_in_a_defs_yaml_is_named_with_the_file_the_entry_and_the_field(project: tuple[Path, dict[str, str]]):
    root, _ = project
    folder = root / "data_migration" / "lists" / "broken"
    folder.mkdir(parents=True)
    defs_yaml = folder / "defs.yaml"
    defs_yaml.write_text(
        "type: data_migration.ExportsComponent\nattributes:\n  exports:\n"
        "    - table: PART\n      s3_path: exports/part.xlsx\n      file_type: xlsx\n"
    )
    checked = run(project, "dg", "check", "defs")
    assert checked.returncode != 0
    assert f"{defs_yaml}: exports[0] (PART).file_type: 'xlsx' is not one of parquet, csv, json" in (
        checked.stdout + checked.stderr
    )
    defs_yaml.unlink()
    folder.rmdir()


def test_two_defs_yaml_lists_whose_exports_overlap_fail_naming_both_files(project: tuple[Path, dict[str, str]]):
    """Issue 31: not one s3_path in both, but one list's object inside the other's split folder."""
    root, _ = project
    lists = root / "data_migration" / "lists"
    written = {
        "shared_a": "    - {table: PART, s3_path: exports/shared/data.parquet, max_rows_per_file: 1000}\n",
        "shared_b": "    - {table: PARTSUPP, s3_path: exports/shared/data/x.csv, file_type: csv}\n",
    }
    for name, entry in written.items():
        (lists / name).mkdir(parents=True)
        (lists / name / "defs.yaml").write_text(
            f"type: data_migration.ExportsComponent\nattributes:\n  exports:\n{entry}"
        )
    checked = run(project, "dg", "check", "defs")
    output = checked.stdout + checked.stderr
    for name in written:
        (lists / name / "defs.yaml").unlink()
        (lists / name).rmdir()
    assert checked.returncode != 0
    assert (
        f"{lists / 'shared_b' / 'defs.yaml'}:4 (PARTSUPP).s3_path: 'exports/shared/data/x.csv' lies inside the "
        f"folder 'exports/shared/data' of {lists / 'shared_a' / 'defs.yaml'}:4 (PART)'s split output"
    ) in " ".join(output.split()), output[-3000:]


def test_two_lists_that_define_the_same_asset_fail_naming_both_files(tmp_path: Path):
    env = {**environment_without_settings(), "DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}
    other = parse_exports(
        {"exports": [{"table": "ORDERS", "s3_path": "exports/other/orders.parquet"}]}, tmp_path / "other.yaml", [2]
    )
    with pytest.raises(ConfigError) as raised:
        definitions_for(load_exports(EXAMPLE_CONFIG), env, list_definitions(other, env, "other_"))
    message = str(raised.value)
    assert f"ORDERS is defined by {EXAMPLE_CONFIG.resolve()}:" in message and f"{tmp_path / 'other.yaml'}:2" in message
    same_path = parse_exports(
        {"exports": [{"table": "NATION", "s3_path": "exports/orders/data.parquet"}]}, tmp_path / "third.yaml"
    )
    with pytest.raises(ConfigError) as raised:
        definitions_for(load_exports(EXAMPLE_CONFIG), env, list_definitions(same_path, env, "third_"))
    assert (
        f"{tmp_path / 'third.yaml'} (NATION).s3_path: 'exports/orders/data.parquet' is also the s3_path of "
        f"{EXAMPLE_CONFIG.resolve()}:"
    ) in str(raised.value) and " (ORDERS); give each export its own s3_path" in str(raised.value)
    # Two lists reading one table share its source asset, observed on both lists' crons.
    nation = parse_exports(
        {"exports": [{"table": "ORDERS_COPY", "s3_path": "x.parquet", "query": "SELECT * FROM ORDERS",
                      "automation": "on_change", "schedule": "*/5 * * * *"}]},
        tmp_path / "fourth.yaml",
    )  # fmt: skip
    defs = definitions_for(load_exports(EXAMPLE_CONFIG), env, list_definitions(nation, env, "fourth_"))
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert specs[f"{SOURCES}/ORDERS"].metadata["read_by"] == [
        "ORDERS",
        "RECENT_ORDERS",
        "ORDER_SUMMARY",
        "ORDERS_COPY",
    ]
    assert "*/5 * * * *" in str(specs[f"{SOURCES}/ORDERS"].automation_condition)
    assert "data_migration_automation" in {sensor.name for sensor in defs.sensors or []}


def test_two_lists_that_load_one_table_fail_naming_both_files(tmp_path: Path):
    """Issue 32: each load's sweep drops the helper tables of its target that it marked, so two lists
    loading one table (spelt differently: not one asset key) would drop each other's mid-run."""
    env = {**environment_without_settings(), "DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}

    def one_load(name: str, table: str) -> Any:
        document = {
            "exports": [{"table": f"ORDERS_{name.upper()}", "s3_path": f"exports/{name}/orders.parquet"}],
            "loads": [{"table": table, "from": f"ORDERS_{name.upper()}", "mode": "replace"}],
        }
        return parse_exports(document, tmp_path / f"{name}.yaml", [2], [4])

    first, second = one_load("a", "ANALYTICS.PUBLIC.ORDERS_COPY"), one_load("b", "analytics.public.orders_copy")
    with pytest.raises(ConfigError) as raised:
        combined([list_definitions(first, env, "a_"), list_definitions(second, env, "b_")])
    message = " ".join(str(raised.value).split())
    assert (
        f'{tmp_path / "b.yaml"}:4 (analytics/public/orders_copy).table: loads "ANALYTICS"."PUBLIC"."ORDERS_COPY", '
        f"as {tmp_path / 'a.yaml'}:4 (ANALYTICS/PUBLIC/ORDERS_COPY) does"
    ) in message, message
    other = one_load("c", "ANALYTICS.PUBLIC.OTHER")
    assert combined([list_definitions(first, env, "a_"), list_definitions(other, env, "c_")]).assets


def test_a_job_name_a_list_takes_and_another_part_defines_is_an_error_naming_both(tmp_path: Path):
    env = {**environment_without_settings(), "DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}
    listed = parse_exports(
        {"exports": [{"table": "NATION", "s3_path": "exports/n.parquet", "schedule": "0 6 * * *"}]},
        tmp_path / "a.yaml",
    )

    @dg.op
    def noop() -> None:
        pass

    @dg.job(name="exports_0_6_x_x_x_job", description="the team's own job")
    def own() -> None:
        noop()

    with pytest.raises(ConfigError) as raised:
        combined([list_definitions(listed, env), dg.Definitions(jobs=[own])])
    message = str(raised.value)
    assert "the job name exports_0_6_x_x_x_job is taken twice" in message, message
    assert '"Exports on the schedule `0 6 * * *` (UTC): NATION."' in message and '"the team\'s own job"' in message
