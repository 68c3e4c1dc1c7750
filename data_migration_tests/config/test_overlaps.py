"""Exports whose outputs can overlap in the bucket are refused when the list loads (issue 31).

A split export owns a folder (its s3_path minus the extension) and deletes whatever its manifest
does not list there after each commit, so two exports that share, nest or render into one
another's folder or key would destroy each other's files. Every shape is refused before any
network call, naming both entries; shapes that cannot collide stay allowed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from data_migration.config import ConfigError, ExportsConfig, load_exports, parse_exports
from data_migration.definitions import definitions_for, list_definitions
from data_migration_tests.support import EXAMPLE_CONFIG, environment_without_settings

BIN = Path(sys.executable).parent
DAILY = {"column": "O_ORDERDATE", "granularity": "daily", "start": "2024-01-01"}
HOURLY = {**DAILY, "granularity": "hourly"}
WEEKLY = {**DAILY, "granularity": "weekly"}
MONTHLY = {**DAILY, "granularity": "monthly"}


def load(tmp_path: Path, *exports: dict[str, Any]) -> ExportsConfig:
    path = tmp_path / "exports.yaml"
    path.write_text(yaml.safe_dump({"exports": list(exports)}, sort_keys=False))
    return load_exports(path)


def problems_for(tmp_path: Path, *exports: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, *exports)
    message = str(raised.value)
    assert str(tmp_path / "exports.yaml") in message  # every error names the file
    return message


def split(table: str, s3_path: str, **more: Any) -> dict[str, Any]:
    file_type = "csv" if ".csv" in s3_path else "parquet"
    return {"table": table, "s3_path": s3_path, "file_type": file_type, "max_rows_per_file": 1000, **more}


def single(table: str, s3_path: str, **more: Any) -> dict[str, Any]:
    file_type = "csv" if ".csv" in s3_path else "parquet"
    return {"table": table, "s3_path": s3_path, "file_type": file_type, **more}


# In one list -------------------------------------------------------------------------------------


def test_split_exports_differing_only_in_extension_share_one_folder(tmp_path: Path):
    message = problems_for(
        tmp_path, split("ORDERS", "exports/orders/data.parquet"), split("ORDERS_CSV", "exports/orders/data.csv")
    )
    assert (
        "exports[1] (ORDERS_CSV).s3_path: 'exports/orders/data.csv' writes its parts and manifest in the folder "
        "'exports/orders/data', as exports[0] (ORDERS)'s split output does; give each export its own folder"
    ) in message
    assert "ORDERS)." not in message.replace("ORDERS_CSV).", "")  # one problem, on the later entry


@pytest.mark.parametrize(
    "outer",
    [
        {"incremental": {"cursor": "O_ORDERDATE", "initial": "1992-01-01"}},
        {"method": "unload"},
        {"max_file_size_mb": 64},
    ],
    ids=["incremental", "unload", "max_file_size_mb"],
)
def test_every_kind_of_split_export_owns_its_folder(tmp_path: Path, outer: dict[str, Any]):
    message = problems_for(
        tmp_path, single("ORDERS", "exports/orders/data.parquet", **outer), single("NOTES", "exports/orders/data/n.csv")
    )
    assert (
        "exports[1] (NOTES).s3_path: 'exports/orders/data/n.csv' lies inside the folder 'exports/orders/data' "
        "of exports[0] (ORDERS)'s split output; give each export its own folder"
    ) in message


def test_an_object_inside_the_folder_of_a_partition_of_a_split_export(tmp_path: Path):
    message = problems_for(
        tmp_path,
        split("ORDERS", "exports/orders/date={partition}/data.parquet", partition=DAILY),
        single("EXTRA", "exports/orders/date=2024-03-01/data/extra.csv"),
    )
    assert (
        "exports[1] (EXTRA).s3_path: 'exports/orders/date=2024-03-01/data/extra.csv' can lie inside the folder of "
        "a partition of exports[0] (ORDERS)'s split output ('exports/orders/date={partition}/data')"
    ) in message


def test_nested_split_folders(tmp_path: Path):
    message = problems_for(
        tmp_path,
        split("INNER", "exports/2024-01-01/data/lines.parquet"),
        split("OUTER", "exports/{partition}/data.parquet", partition=DAILY),
    )
    assert (
        "exports[0] (INNER).s3_path: 'exports/2024-01-01/data/lines.parquet' can lie inside the folder of a "
        "partition of exports[1] (OUTER)'s split output ('exports/{partition}/data'); give each export its own folder"
    ) in message


def test_an_object_at_the_path_of_a_split_folder(tmp_path: Path):
    message = problems_for(tmp_path, split("ORDERS", "exports/orders/data.parquet"), single("X", "exports/orders/data"))
    assert (
        "exports[1] (X).s3_path: 'exports/orders/data' is the folder of exports[0] (ORDERS)'s split output; "
        "give each export its own folder"
    ) in message


@pytest.mark.parametrize(
    ("s3_path", "folder"),
    [
        ("exports/orders/data.{partition}", "exports/orders/data"),
        ("exports/o/data.csv.{partition}", "exports/o/data.csv"),
    ],
)
def test_partition_in_the_extension_of_a_split_export_shares_one_folder(tmp_path: Path, s3_path: str, folder: str):
    message = problems_for(tmp_path, split("ORDERS", s3_path, partition=DAILY, file_type="parquet"))
    assert (
        f"exports[0] (ORDERS).s3_path: {s3_path!r}: every partition would share one folder for its parts and "
        f"manifest ({folder!r}); put {{partition}} in a folder name, "
        "e.g. exports/orders/date={partition}/data.parquet"
    ) in message


@pytest.mark.parametrize(
    ("partition", "literal"),
    [(DAILY, "exports/x/2024-01-01.parquet"), (HOURLY, "exports/x/2024-01-01-06:00.parquet")],
    ids=["daily", "hourly"],
)
def test_a_template_that_renders_to_another_exports_key(tmp_path: Path, partition: dict, literal: str):
    message = problems_for(
        tmp_path,
        single("W", "exports/w.parquet"),
        single("Y", "exports/x/{partition}.parquet", partition=partition),
        single("X", literal),
    )
    assert (
        f"exports[2] (X).s3_path: {literal!r} can be the key of a partition of exports[1] (Y) "
        "('exports/x/{partition}.parquet'); give each export its own s3_path"
    ) in message
    assert "exports[0]" not in message and "exports[1] (Y).s3_path" not in message


@pytest.mark.parametrize(
    ("other", "day"),
    [(WEEKLY, "2024-01-07"), (MONTHLY, "2024-02-01"), (DAILY, "2024-01-02")],
    ids=["weekly", "monthly", "daily"],
)
def test_two_templates_whose_keys_have_one_shape_can_collide(tmp_path: Path, other: dict, day: str):
    # A week's and a month's keys are the days they start on, so they are daily keys too: both
    # of these write exports/<day>/<day>.parquet.
    message = problems_for(
        tmp_path,
        single("D", f"exports/{{partition}}/{day}.parquet", partition=DAILY),
        single("O", f"exports/{day}/{{partition}}.parquet", partition=other),
    )
    assert (
        f"exports[1] (O).s3_path: 'exports/{day}/{{partition}}.parquet' can be the key of a partition of exports[0] "
        f"(D) ('exports/{{partition}}/{day}.parquet'); give each export its own s3_path"
    ) in message


def test_a_template_and_a_literal_in_another_folder_can_collide(tmp_path: Path):
    message = problems_for(
        tmp_path,
        single("D", "exports/x/day={partition}/data.parquet", partition=DAILY),
        single("H", "exports/x/day=2024-01-01/data.parquet/extra.parquet"),
    )
    assert (
        "exports[1] (H).s3_path: 'exports/x/day=2024-01-01/data.parquet/extra.parquet' can lie inside the key of a "
        "partition of exports[0] (D) ('exports/x/day={partition}/data.parquet')"
    ) in message


def test_daily_and_hourly_keys_differ_in_length_so_the_same_template_is_accepted(tmp_path: Path):
    """`2024-01-01` and `2024-01-01-00:00`: no daily key is an hourly one, nor a folder of one."""
    config = load(
        tmp_path,
        single("D", "exports/x/{partition}.parquet", partition=DAILY),
        single("H", "exports/x/{partition}.parquet", partition=HOURLY, query="SELECT * FROM ORDERS"),
        split("DS", "exports/y/{partition}/data.parquet", partition=DAILY),
        split("HS", "exports/y/{partition}/data.parquet", partition=HOURLY, query="SELECT * FROM ORDERS"),
    )
    assert [spec.table for spec in config.exports] == ["D", "H", "DS", "HS"]


def test_exports_that_cannot_overlap_stay_allowed(tmp_path: Path):
    config = load(
        tmp_path,
        single("NATION", "b/x.parquet"),
        single("REGION", "b-x/y.parquet"),
        single("CASE_A", "A/x.parquet"),
        single("CASE_B", "a/x.parquet"),
        split("ORDERS", "exports/orders/data.parquet"),
        single("SIBLING", "exports/orders/data-2.parquet"),
        split("DAYS", "exports/days/date={partition}/data.parquet", partition=DAILY),
        split("MONTHS", "exports/months/date={partition}/data.parquet", partition=MONTHLY),
        single("BESIDE", "exports/days/date=2024-01-01/other.parquet"),
        single("NOT_A_KEY", "exports/x/2024-01-01x.parquet"),
        single("TEMPLATE", "exports/x/{partition}.parquet", partition=DAILY),
    )
    assert len(config.exports) == 11


def test_five_hundred_exports_load_and_a_late_overlap_is_found(tmp_path: Path):
    exports = [
        single(f"T{i}", f"exports/t{i}/{{partition}}.parquet", partition=DAILY)
        if i % 3 == 0
        else split(f"T{i}", f"exports/t{i}/data.parquet")
        for i in range(500)
    ]
    assert len(load(tmp_path, *exports).exports) == 500
    message = problems_for(tmp_path, *exports, single("LATE", "exports/t250/data/late.parquet"))
    assert "exports[500] (LATE).s3_path: 'exports/t250/data/late.parquet' lies inside the folder" in message
    assert message.count("exports[") == 2  # one problem, naming both entries


# Across the lists of one code location -----------------------------------------------------------


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**environment_without_settings(), "DATA_MIGRATION_LOCAL_DIR": str(tmp_path)}


def a_list(tmp_path: Path, name: str, *exports: dict[str, Any]) -> ExportsConfig:
    return parse_exports({"exports": list(exports)}, tmp_path / name, [3 + 2 * i for i in range(len(exports))])


def test_two_lists_whose_exports_overlap_fail_naming_both_files(tmp_path: Path):
    env = env_for(tmp_path)
    first = a_list(
        tmp_path, "first.yaml", single("NATION", "exports/n.parquet"), split("A", "exports/shared/data.parquet")
    )
    second = a_list(tmp_path, "second.yaml", single("B", "exports/shared/data/x.csv"))
    with pytest.raises(ConfigError) as raised:
        definitions_for(first, env, list_definitions(second, env, "second_"))
    assert (
        f"{tmp_path / 'second.yaml'}:3 (B).s3_path: 'exports/shared/data/x.csv' lies inside the folder "
        f"'exports/shared/data' of {tmp_path / 'first.yaml'}:5 (A)'s split output"
    ) in str(raised.value)


def test_a_partition_of_one_list_can_be_the_key_of_another_lists_export(tmp_path: Path):
    env = env_for(tmp_path)
    first = a_list(tmp_path, "first.yaml", single("Y", "exports/x/{partition}.parquet", partition=HOURLY))
    second = a_list(tmp_path, "second.yaml", single("X", "exports/x/2024-01-02-06:00.parquet"))
    with pytest.raises(ConfigError) as raised:
        definitions_for(first, env, list_definitions(second, env, "second_"))
    assert (
        f"{tmp_path / 'second.yaml'}:3 (X).s3_path: 'exports/x/2024-01-02-06:00.parquet' can be the key of a "
        f"partition of {tmp_path / 'first.yaml'}:3 (Y) ('exports/x/{{partition}}.parquet')"
    ) in str(raised.value)
    daily = a_list(tmp_path, "daily.yaml", single("Z", "exports/x/{partition}.parquet", partition=DAILY))
    definitions_for(first, env, list_definitions(daily, env, "daily_"))  # lengths differ: no conflict


def test_lists_that_cannot_overlap_load_together(tmp_path: Path):
    env = env_for(tmp_path)
    other = a_list(tmp_path, "other.yaml", split("OTHER_ORDERS", "exports/orders/data-2.parquet"))
    definitions_for(load_exports(EXAMPLE_CONFIG), env, list_definitions(other, env, "other_"))


# The command line --------------------------------------------------------------------------------


def test_data_migration_run_exits_2_on_overlapping_exports(tmp_path: Path):
    config = tmp_path / "overlap.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "exports": [
                    split("ORDERS", "exports/orders/data.parquet"),
                    split("ORDERS_CSV", "exports/orders/data.csv"),
                ]
            }
        )
    )
    done = subprocess.run(
        [str(BIN / "data-migration"), "run", "--config", str(config)],
        env=environment_without_settings(DATA_MIGRATION_LOCAL_DIR=str(tmp_path / "local")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "exports[1] (ORDERS_CSV).s3_path: 'exports/orders/data.csv' writes its parts and manifest" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "local").exists()  # nothing started
