"""Every way a person loads the project finds the same definitions: `dagster dev` with and without
workspace.yaml, `dagster definitions validate`, `-m data_migration`, `dg`; and on a fresh copy of
the repository with a fresh virtual environment, after the README's `./quickstart run`, every
command of the README's Dagster block works as written in the activated shell (`dagster dev` and
`dg dev` serve the UI; the design card's `dagster asset materialize --select ORDERS` runs)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import requests
import yaml

from data_migration.local import emulator
from data_migration_tests.support import (
    PROJECT_ROOT,
    environment_without_settings,
    free_port,
    local_folder,
    wait_until_serving,
)

BIN = Path(sys.executable).parent
# The list's exports and load, and the two tables they read (observable source assets, which
# `dagster asset list` leaves out: it lists what can be materialized).
MATERIALIZED = ["CUSTOMER", "ORDERS", "ORDER_SUMMARY", "RECENT_ORDERS"]
# Source assets are keyed by the tables' full names, in the embedded default's database and schema.
SOURCES = f"snowflake/{emulator.DATABASE}/{emulator.SCHEMA}"
EXAMPLE_ASSETS = sorted([*MATERIALIZED, f"{SOURCES}/CUSTOMER", f"{SOURCES}/ORDERS"])


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
    assert listed == {"data_migration": MATERIALIZED, "data_migration.definitions": MATERIALIZED, "dg": EXAMPLE_ASSETS}


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
        stop_process_group(process)


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


def readme_dagster_block() -> list[str]:
    """Every command of the README's "The Dagster UI and CLI" block, with the alternatives its
    comments give as "(or: …)", in order; `source .venv/bin/activate` excepted."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text[text.index("## The Dagster UI and CLI") :]
    block = section[section.index("```bash\n") + len("```bash\n") : section.index("```\n", section.index("```bash"))]
    commands = []
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        commands.append(command.strip())
        commands += re.findall(r"\(or: ([^)]+)\)", comment)
    assert commands[0] == "source .venv/bin/activate", commands
    return commands[1:]


SERVES_THE_UI = {"dagster dev", "dg dev"}
UI = "http://127.0.0.1:3000"  # where the README says the UI is


@pytest.fixture(scope="module")
def newcomers_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], CompletedProcess]]:
    """A copy of the repository set up by the README's first command, `./quickstart run` (its own
    virtual environment, its own .local/), and the environment of a new user's login shell there:
    no settings, no virtual environment active, a home of its own (no profile of ours)."""
    root = tmp_path_factory.mktemp("newcomer")
    repo = _copy_of_the_repository(root / "data-migration")
    (root / "home").mkdir()
    env = clean_env(HOME=str(root / "home"))
    first = run(["./quickstart", "run"], env, cwd=repo, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    yield repo, env, first


def in_activated_shell(repo: Path, env: dict[str, str], command: str, **popen: object):
    """`command` typed in a login shell after `source .venv/bin/activate`, from the project root."""
    argv = ["bash", "-l", "-c", f"source .venv/bin/activate && {command}"]
    if popen:
        return subprocess.Popen(argv, env=env, cwd=repo, start_new_session=True, **popen)
    return run(argv, env, cwd=repo)


def readme_section(title: str) -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_readmes_add_an_export_section_as_written(newcomers_copy):
    """README "Add an export and run just that one": its entry added to the shipped list, then
    each command of its bash block typed in the activated shell, as written."""
    repo, env, _ = newcomers_copy
    section = readme_section("Add an export and run just that one")
    (entry,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["data-migration run --select NATION", "data-migration run --config config/round_trip.yaml"]
    shipped = repo / "config" / "export_tables.yaml"
    original = shipped.read_text()
    try:
        listed = yaml.safe_load(original)
        listed["exports"] += yaml.safe_load(entry)["exports"]
        shipped.write_text(yaml.safe_dump(listed, sort_keys=False))
        selected = in_activated_shell(repo, env, commands[0])
        assert selected.returncode == 0, (selected.stdout + selected.stderr)[-3000:]
        assert "1 of 1 exports succeeded" in selected.stdout and "✓ NATION" in selected.stdout, selected.stdout
        nation = (repo / ".local" / "bucket" / "exports" / "nation" / "data.csv").read_text()
        assert nation.splitlines()[0] == '"N_NATIONKEY","N_NAME"' and len(nation.splitlines()) == 26, nation[:200]
        # The mistake the section shows is named as it shows it.
        listed["exports"][-1]["file_type"] = "xlsx"
        shipped.write_text(yaml.safe_dump(listed, sort_keys=False))
        broken = in_activated_shell(repo, env, commands[0])
        (shown,) = [line for line in section.splitlines() if line.startswith("error: /…/config/export_tables.yaml: ")]
        assert broken.returncode == 2 and shown.replace("/…/", f"{repo}/") in broken.stderr, broken.stderr
    finally:
        shipped.write_text(original)
    round_trip = in_activated_shell(repo, env, commands[1])
    assert round_trip.returncode == 0, (round_trip.stdout + round_trip.stderr)[-3000:]
    assert 'loaded into "ORDERS_RESTORED" (replace)' in round_trip.stdout


def test_a_newcomers_first_run_on_a_fresh_copy(newcomers_copy):
    """README: `./quickstart run` on a fresh copy with no settings at all exports the example list."""
    repo, _, first = newcomers_copy
    assert "4 of 4 exports succeeded" in first.stdout
    assert len(first.stdout.splitlines()) <= 40 and "DEBUG" not in first.stdout + first.stderr
    assert (repo / ".local" / "bucket" / "exports" / "orders" / "data.parquet").is_file()


def test_every_command_of_the_readmes_dagster_block_in_the_activated_shell(newcomers_copy, tmp_path: Path):
    """Issue 25: each command of the README's Dagster block, typed as written in the activated
    shell of the fresh copy. `dagster dev` and `dg dev` must serve the UI at the README's address
    with the example assets (they hung there while the shell exported DAGSTER_MODULE_NAME); the
    whole process tree is stopped after each."""
    repo, env, _ = newcomers_copy
    commands = readme_dagster_block()
    assert SERVES_THE_UI <= set(commands) and "dagster asset materialize --select ORDERS" in commands, commands
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(repo / ".local" / "dagster_home")) as instance:
        runs_before = len(instance.get_runs())
    launched = 0
    for command in commands:
        if command in SERVES_THE_UI:
            serve_the_ui_then_stop(repo, env, command, tmp_path / f"{command.replace(' ', '-')}.log")
            continue
        done = in_activated_shell(repo, env, command)
        assert done.returncode == 0, f"{command}: {(done.stdout + done.stderr)[-3000:]}"
        output = done.stdout + done.stderr
        if command.startswith(("dagster asset materialize", "dg launch", "dagster job execute")):
            assert "RUN_SUCCESS" in output, f"{command}: {output[-3000:]}"
            launched += 1
        if command.startswith("dagster asset materialize"):
            assert "Export complete: 15000 rows" in output
        if command.startswith(("dg check defs", "dagster definitions validate")):
            assert "All definitions loaded successfully." in output or "All code locations passed validation." in output
        if command.startswith("dagster schedule list"):
            assert "Cron Schedule: " in output, output[-3000:]
        if command.startswith("dg list defs"):
            assert all(asset in output for asset in EXAMPLE_ASSETS), output[-3000:]
    # Every run above is in the one instance that `dagster dev` in that shell shows.
    with DagsterInstance.from_config(str(repo / ".local" / "dagster_home")) as instance:
        assert len(instance.get_runs()) == runs_before + launched


def serve_the_ui_then_stop(repo: Path, env: dict[str, str], command: str, log_path: Path) -> None:
    with contextlib.closing(socket.socket()) as probe:
        assert probe.connect_ex(("127.0.0.1", 3000)) != 0, "port 3000 is taken: the README's UI address"
    with open(log_path, "w") as log:
        process = in_activated_shell(repo, env, command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(UI, process, log_path, command, seconds=90)
        data = requests.post(f"{UI}/graphql", json={"query": ASSET_KEYS}, timeout=60).json()["data"]
        assert sorted("/".join(node["assetKey"]["path"]) for node in data["assetNodes"]) == EXAMPLE_ASSETS
        assert [entry["name"] for entry in data["workspaceOrError"]["locationEntries"]] == ["data_migration"]
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the shell's whole group (dagster dev, its webserver, daemon and code servers);
    SIGKILL to what is left after 60 s (a loaded machine can keep Dagster's shutdown waiting);
    return once no process of the group is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _group_alive(process) and time.monotonic() < deadline + 30:  # (only zombies can outlive SIGKILL)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.25)


def _group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reap the shell itself
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_activated_shell_keeps_explicit_targets_and_deactivate_removes_its_settings(newcomers_copy):
    """A command that names a target of its own runs as typed (Dagster refuses two targets): the
    DataFrames example of docs/loads.md, copied from the page, lists with the exports; and
    `deactivate` leaves the shell as it found it."""
    repo, env, _ = newcomers_copy
    page = (PROJECT_ROOT / "docs" / "loads.md").read_text()
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", page, re.DOTALL) if "my_assets.py" in block]
    (repo / "my_assets.py").write_text(example)
    listed = in_activated_shell(repo, env, "dagster asset list -f my_assets.py")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert {"ANALYTICS/customer_scores", "ORDERS"} <= set(listed.stdout.split()), listed.stdout
    validated = in_activated_shell(repo, env, "dagster definitions validate -w workspace.yaml")
    assert validated.returncode == 0, validated.stderr[-3000:]
    state = in_activated_shell(
        repo,
        env,
        'type -t dagster; echo "home=$DAGSTER_HOME module=${DAGSTER_MODULE_NAME-unset}"; deactivate; '
        'type -t dagster || echo "no function"; echo "home=${DAGSTER_HOME-unset} venv=${VIRTUAL_ENV-unset}"',
    )
    assert state.stdout.splitlines() == [
        "function",
        f"home={repo / '.local' / 'dagster_home'} module=unset",
        "no function",
        "home=unset venv=unset",
    ], state.stdout + state.stderr


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
