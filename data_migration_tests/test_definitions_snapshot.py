"""The definitions built from the example export list, compared with a stored snapshot, so that a
rename (an asset key, a metadata key, a check, a job, a schedule, a sensor) shows up in review.

After an intended change, rewrite the snapshot and commit it with the change:
    UPDATE_SNAPSHOTS=1 ./quickstart test data_migration_tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from data_migration.definitions import build_definitions
from data_migration.exports.sources import SOURCE_GROUP
from data_migration_tests.support import EXAMPLE_CONFIG

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(path: Path, env: dict[str, str]) -> dict[str, Any]:
    defs = build_definitions(path, env)
    repository = defs.get_repository_def()
    assets = {}
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        assets[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "metadata_keys": sorted(spec.metadata),
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
        }
    checks = sorted(
        f"{key.asset_key.to_user_string()}:{key.name}"
        for checks_def in repository.asset_checks_defs_by_key.values()
        for key in checks_def.check_keys
    )
    return {
        "assets": assets,
        "checks": sorted(set(checks)),
        "jobs": sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")),
        "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
        "resources": sorted(defs.resources or {}),
    }


def test_definitions_match_the_snapshot(tmp_path: Path):
    current = describe(EXAMPLE_CONFIG, {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)})
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    stored = json.loads(SNAPSHOT.read_text())
    assert current == stored, (
        "the definitions changed; if that is intended, run UPDATE_SNAPSHOTS=1 ./quickstart test "
        "data_migration_tests/test_definitions_snapshot.py and commit the snapshot"
    )


def test_a_renamed_asset_key_fails_the_comparison(tmp_path: Path):
    """The mechanism itself: renaming ORDERS in the list changes what the snapshot compares."""
    renamed = tmp_path / "renamed.yaml"
    text = EXAMPLE_CONFIG.read_text().replace("table: ORDERS\n", "table: ORDERS_V2\n", 1)
    renamed.write_text(text)
    changed = describe(renamed, {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)})
    stored = json.loads(SNAPSHOT.read_text())
    assert changed != stored
    assert "ORDERS" in stored["assets"] and "ORDERS" not in changed["assets"] and "ORDERS_V2" in changed["assets"]


def test_each_asset_links_to_its_entry_in_the_export_list(tmp_path: Path):
    """The UI's "view source" of an asset opens the YAML at the line its entry starts on."""
    defs = build_definitions(EXAMPLE_CONFIG, {"DATA_MIGRATION_LOCAL_DIR": str(tmp_path)})
    lines = EXAMPLE_CONFIG.read_text().splitlines()
    for spec in defs.resolve_all_asset_specs():
        if spec.group_name == SOURCE_GROUP:  # a table the exports read, not an entry of the list
            continue
        (reference,) = spec.metadata["dagster/code_references"].code_references
        assert reference.file_path == str(EXAMPLE_CONFIG.resolve())
        assert lines[reference.line_number - 1] == f"  - table: {spec.key.to_user_string()}"
        assert reference.label.endswith(f"({spec.key.to_user_string()}) in the export list")
