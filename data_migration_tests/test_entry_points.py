"""Every way a person loads the project finds the same definitions: `dagster dev` with and without
workspace.yaml, `dagster definitions validate`, `-m data_migration`, `dg`; and on a fresh copy of
the repository with a fresh virtual environment, the README's set-up makes the design card's
`dagster asset materialize --select ORDERS` and `dg launch --assets ORDERS` work as written in
the activated shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from data_migration_tests.support import (
    PROJECT_ROOT,
    environment_without_settings,
    free_port,
    local_folder,
    wait_until_serving,
)

BIN = Path(sys.executable).parent
EXAMPLE_ASSETS = ["CUSTOMER", "ORDERS", "ORDERS_RESTORED", "ORDER_SUMMARY", "RECENT_ORDERS"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a shell with no project settings and no virtual environment active."""
    env = environment_without_settings(**extra)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != BIN)
    return env


@pytest.fixture
def home_and_local(tmp_path: Path, tpch_dir: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {"DAGSTER_HOME": str(home), "DATA_MIGRATION_LOCAL_DIR": str(local_folder(tmp_path, tpch_dir))}


def run(
    command: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "target", [[], ["-w", "workspace.yaml"], ["-m", "data_migration"], ["-m", "data_migration.definitions"]]
)
def test_definitions_validate_from_the_project_root(home_and_local: dict[str, str], target: list[str]):
    done = run([str(BIN / "dagster"), "definitions", "validate", *target], clean_env(**home_and_local))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All code locations passed validation." in done.stdout
    if target in ([], ["-w", "workspace.yaml"]):  # pyproject.toml and workspace.yaml name the same location
        assert "Validation successful for code location data_migration." in done.stdout


def test_dagster_and_dg_list_the_same_assets(home_and_local: dict[str, str]):
    listed = {}
    for module in ("data_migration", "data_migration.definitions"):
        done = run([str(BIN / "dagster"), "asset", "list", "-m", module], clean_env(**home_and_local))
        assert done.returncode == 0, done.stderr[-3000:]
        listed[module] = done.stdout.split()
    done = run([str(BIN / "dg"), "list", "defs", "--json"], clean_env(**home_and_local))
    assert done.returncode == 0, done.stderr[-3000:]
    listed["dg"] = sorted(asset["asset_key"] for asset in json.loads(done.stdout)["assets"])
    assert listed == {name: EXAMPLE_ASSETS for name in listed}


@pytest.fixture
def dagster_dev(tmp_path: Path, home_and_local: dict[str, str]) -> Iterator:
    started: list[subprocess.Popen] = []

    def start(command: list[str]) -> str:
        port = free_port()
        log = open(tmp_path / f"dev-{port}.log", "w")
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:], "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=clean_env(**home_and_local),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process, tmp_path / f"dev-{port}.log", "dagster dev")
        return url

    yield start
    for process in started:
        os.killpg(process.pid, 15)  # dagster dev, its webserver, daemon and code server
        process.wait(timeout=60)


ASSET_KEYS = "{ assetNodes { assetKey { path } } workspaceOrError { ... on Workspace { locationEntries { name } } } }"


@pytest.mark.parametrize(
    "command", [["dagster", "dev"], ["dagster", "dev", "-w", "workspace.yaml"], ["dg", "dev"]], ids=" ".join
)
def test_dagster_dev_with_and_without_the_workspace_file_and_dg_dev(dagster_dev, command: list[str]):
    url = dagster_dev(command)
    data = requests.post(f"{url}/graphql", json={"query": ASSET_KEYS}, timeout=60).json()["data"]
    assert sorted("/".join(node["assetKey"]["path"]) for node in data["assetNodes"]) == EXAMPLE_ASSETS
    assert [entry["name"] for entry in data["workspaceOrError"]["locationEntries"]] == ["data_migration"]


def _copy_of_the_repository(destination: Path) -> Path:
    """The files a clone would have (tracked, plus new ones not ignored), as they are now."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_a_newcomers_path_on_a_fresh_copy(tmp_path: Path):
    """README: `./quickstart run`, then `source .venv/bin/activate`, then the Dagster commands as
    the design card writes them, from the project root, with no settings at all."""
    repo = _copy_of_the_repository(tmp_path / "data-migration")
    env = clean_env()
    first = run(["./quickstart", "run"], env, cwd=repo, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert "5 of 5 exports and loads succeeded" in first.stdout
    assert len(first.stdout.splitlines()) <= 40 and "DEBUG" not in first.stdout + first.stderr

    def in_activated_shell(command: str) -> subprocess.CompletedProcess:
        return run(["bash", "-c", f"source .venv/bin/activate && {command}"], env, cwd=repo)

    materialized = in_activated_shell("dagster asset materialize --select ORDERS")
    assert materialized.returncode == 0, materialized.stderr[-3000:]
    assert "RUN_SUCCESS" in materialized.stderr and "Export complete: 15000 rows" in materialized.stderr
    launched = in_activated_shell("dg launch --assets ORDERS")
    assert launched.returncode == 0, (launched.stdout + launched.stderr)[-3000:]
    assert "RUN_SUCCESS" in launched.stdout + launched.stderr
    checked = in_activated_shell("dg check defs")
    assert checked.returncode == 0 and "All definitions loaded successfully." in checked.stdout + checked.stderr
    # An explicit other target still works in that shell once the project's default is cleared.
    validated = in_activated_shell("DAGSTER_MODULE_NAME= dagster definitions validate -w workspace.yaml")
    assert validated.returncode == 0, validated.stderr[-3000:]

    # Every run above is in the one instance that `dagster dev` in that shell shows.
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(repo / ".local" / "dagster_home")) as instance:
        assert len(instance.get_runs()) == 3
    assert (repo / ".local" / "bucket" / "exports" / "orders" / "data.parquet").is_file()


def test_a_process_that_loads_the_project_exits_without_the_last_collection():
    """shutdown.py: the exit hook freezes the collector, so finalization skips its pass over every
    loaded module; the other exit hooks still run."""
    script = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('earlier hook ran, frozen:', gc.get_freeze_count() > 0))\n"
        "import data_migration\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["frozen before exit: False", "earlier hook ran, frozen: True"]
