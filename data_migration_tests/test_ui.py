"""The UI, as a person sees it: dagster-webserver on the embedded default, a materialization
launched through its GraphQL API, and the asset's page in a real headless Chromium.

The screenshot is kept in test-artifacts/ui-orders.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from data_migration_tests.support import (
    PROJECT_ROOT,
    environment_without_settings,
    free_port,
    local_folder,
    wait_until_serving,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
# As the machine's notes advise: no background traffic, which a closed network would refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def webserver(tmp_path: Path, tpch_dir: Path) -> Iterator[str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Launch runs at once, without the daemon that a queue would need.
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = environment_without_settings(
        DAGSTER_HOME=str(home), DATA_MIGRATION_LOCAL_DIR=str(local_folder(tmp_path, tpch_dir))
    )
    port = free_port()
    log = open(tmp_path / "webserver.log", "w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, tmp_path / "webserver.log", "dagster-webserver")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
CHECKS = ("readable", "row_count_matches_source", "schema_unchanged")
CHECK_STATUS = """{ assetNodes(assetKeys: [{path: ["ORDERS"]}]) { assetChecksOrError { ... on AssetChecks {
  checks { name executionForLatestMaterialization { status } } } } } }"""
LOCATIONS = (
    "{ workspaceOrError { ... on Workspace { locationEntries {"
    " name loadStatus locationOrLoadError { __typename } } } } }"
)


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed here (.ci/run installs it, so CI runs this test)",
)
def test_orders_row_count_shows_in_the_ui(webserver: str):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must have chromium: .ci/run installs it"
    entries = graphql(webserver, LOCATIONS)["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("data_migration", "RepositoryLocation")
    ]

    selector = {
        "repositoryLocationName": "data_migration",
        "repositoryName": "__repository__",
        "jobName": "all_exports",
        "assetSelection": [{"path": ["ORDERS"]}],
        "assetCheckSelection": [{"assetKey": {"path": ["ORDERS"]}, "name": name} for name in CHECKS],
    }
    launched = graphql(webserver, LAUNCH, {"params": {"selector": selector, "mode": "default", "runConfigData": {}}})[
        "launchRun"
    ]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        status = graphql(webserver, STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(0.5)
    assert status == "SUCCESS"

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{webserver}/assets/ORDERS", wait_until="networkidle")
            skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit community dialog
            if skip.count():
                skip.first.click()
                page.wait_for_function("() => !document.querySelector('[role=dialog]')", timeout=10_000)
            row_count = page.get_by_text("Row count", exact=True)
            row_count.first.wait_for(timeout=30_000)
            page.get_by_text("15,000", exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "ui-orders.png"))
            body = page.inner_text("body")
            page.goto(f"{webserver}/assets/ORDERS?view=checks", wait_until="networkidle")
            for name in CHECKS:
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "ui-orders-checks.png"))
            checks_page = page.inner_text("body")
        finally:
            browser.close()
    assert re.search(r"Row count\s+15,000", body)
    for shown in ("snowflake_exports", "NUMBER(15,2)", "O_TOTALPRICE", "exports_0_6_x_x_x_job"):
        assert shown in body, shown
    assert checks_page.count("Succeeded") == len(CHECKS), checks_page
    statuses = graphql(webserver, CHECK_STATUS)["assetNodes"][0]["assetChecksOrError"]["checks"]
    assert {c["name"]: c["executionForLatestMaterialization"]["status"] for c in statuses} == {
        name: "SUCCEEDED" for name in CHECKS
    }
