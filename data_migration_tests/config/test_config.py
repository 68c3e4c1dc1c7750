"""The export list: the example file loads, and every kind of bad input is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_migration.config import ConfigError, load_exports
from data_migration_tests.support import BAD_ENTRIES, EXAMPLE_CONFIG, HOSTILE_S3_PATHS

GOOD = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet"}


def load_yaml(tmp_path: Path, text: str):
    path = tmp_path / "exports.yaml"
    path.write_text(text)
    return load_exports(path)


def problems_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, text)
    message = str(raised.value)
    assert str(tmp_path / "exports.yaml") in message  # every error names the file
    return message


def test_example_config_loads_the_four_exports():
    config = load_exports(EXAMPLE_CONFIG)
    by_table = {spec.table: spec for spec in config.exports}
    assert list(by_table) == ["ORDERS", "CUSTOMER", "RECENT_ORDERS", "ORDER_SUMMARY"]
    assert by_table["ORDERS"].sql == 'SELECT * FROM "ORDERS"'
    assert by_table["ORDERS"].file_type == "parquet"
    assert by_table["ORDER_SUMMARY"].file_type == "csv"
    assert by_table["ORDER_SUMMARY"].s3_path == "exports/order_summary/data.csv"
    assert by_table["RECENT_ORDERS"].sql == (
        "SELECT * FROM ORDERS WHERE O_ORDERDATE >= DATEADD(day, -7, CURRENT_DATE())"
    )
    assert config.schedules() == {"0 6 * * *": (by_table["ORDERS"], by_table["CUSTOMER"])}


def test_defaults_and_trailing_semicolon(tmp_path: Path):
    config = load_yaml(
        tmp_path,
        "exports:\n  - table: orders\n    s3_path: a/b.parquet\n    query: 'select 1 as x;  '\n",
    )
    spec = config.exports[0]
    assert spec.file_type == "parquet"
    assert spec.sql == "select 1 as x"
    assert spec.asset_key_path == ("orders",)


@pytest.mark.parametrize(("entry", "expected"), BAD_ENTRIES)
def test_bad_entry_is_named(tmp_path: Path, entry: str, expected: str):
    assert expected in problems_for(tmp_path, f"exports:\n  - {entry}\n")


@pytest.mark.parametrize("key", HOSTILE_S3_PATHS)
def test_hostile_s3_path_is_rejected(tmp_path: Path, key: str):
    import yaml

    text = yaml.safe_dump({"exports": [{"table": "ORDERS", "s3_path": key}]})
    assert "exports[0] (ORDERS).s3_path:" in problems_for(tmp_path, text)


def test_s3_paths_differing_only_in_case_are_distinct(tmp_path: Path):
    config = load_yaml(
        tmp_path,
        "exports:\n  - {table: A, s3_path: A/x.parquet}\n  - {table: B, s3_path: a/x.parquet}\n",
    )
    assert [s.s3_path for s in config.exports] == ["A/x.parquet", "a/x.parquet"]


def test_cross_entry_problems_name_both_exports(tmp_path: Path):
    message = problems_for(
        tmp_path,
        "exports:\n"
        "  - {table: ORDERS, s3_path: out/data.parquet}\n"
        "  - {table: orders, s3_path: other/data.parquet}\n"
        "  - {table: CUSTOMER, s3_path: out/data.parquet}\n"
        "  - {table: LINEITEM, s3_path: out/data.parquet/part.parquet}\n"
        "  - {table: NATION, s3_path: b/x.parquet}\n"
        "  - {table: REGION, s3_path: b-x/y.parquet}\n",
    )
    assert "exports[1] (orders).table: same asset name as exports[0] (ORDERS)" in message
    assert "exports[2] (CUSTOMER).s3_path: 'out/data.parquet' is also the s3_path of exports[0] (ORDERS)" in message
    assert "exports[3] (LINEITEM).s3_path: 'out/data.parquet/part.parquet' lies inside exports[0] (ORDERS)'s" in message
    assert "NATION" not in message and "REGION" not in message
    assert message.startswith("3 problem(s)") or message.count("\n  ") == 3


def test_all_problems_reported_at_once(tmp_path: Path):
    message = problems_for(
        tmp_path,
        "exports:\n  - {table: A, s3_path: /x.parquet}\n  - {table: B, s3_path: y.parquet, file_type: xml}\n",
    )
    assert "exports[0] (A).s3_path" in message and "exports[1] (B).file_type" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exports:\n  - {table: 'ORDERS, s3_path: x}\n", "line 3, column 1: invalid YAML"),
        ("exports:\n\t- table: ORDERS\n", "invalid YAML"),
        ("exports:\n  - table: ORDERS\n    table: CUSTOMER\n    s3_path: x.parquet\n", "key 'table' appears twice"),
        ("exports: !!python/object/apply:os.system ['touch /tmp/pwned-by-yaml']\n", "invalid YAML"),
        ("", "must be a mapping"),
        ("- table: ORDERS\n", "must be a mapping"),
        ("exports: []\n", "exports: must be a non-empty list"),
        ("exports:\n  - ORDERS\n", "exports[0]: must be a mapping"),
        ("exprts:\n  - {table: A, s3_path: x.parquet}\n", "unknown top-level key(s): exprts"),
    ],
)
def test_file_level_problems(tmp_path: Path, text: str, expected: str):
    assert expected in problems_for(tmp_path, text)
    assert not Path("/tmp/pwned-by-yaml").exists()


def test_invalid_yaml_gives_line_and_column(tmp_path: Path):
    message = problems_for(tmp_path, "exports:\n  - table: ORDERS\n    s3_path: 'unclosed\n")
    assert "line 4, column 1" in message or "line 3" in message


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_exports(tmp_path / "nope.yaml")


def test_every_problem_of_one_entry_is_reported(tmp_path: Path):
    message = problems_for(
        tmp_path,
        "exports:\n  - {table: 'a;b', s3_path: ../x.parquet, file_type: xlsx, query: 'drop table t', extra: 1}\n",
    )
    for field in ("table", "s3_path", "file_type", "query", "extra"):
        assert f"exports[0] (a;b).{field}:" in message


def test_csv_is_exact_by_default_and_formula_escaping_is_asked_for_csv_only(tmp_path: Path):
    """Issue 33: escaping by default changed '+44 20 7946 0958' to "'+44 20 7946 0958" for every reader."""
    config = load_yaml(
        tmp_path,
        "exports:\n"
        "  - {table: A, s3_path: a.csv, file_type: csv}\n"
        "  - {table: B, s3_path: b.csv, file_type: csv, csv_escape_formulas: true}\n"
        "  - {table: C, s3_path: c.parquet}\n",
    )
    assert [dict(s.format_options) for s in config.exports] == [
        {"escape_formulas": False},
        {"escape_formulas": True},
        {"compression": "snappy"},
    ]
    assert (
        config.exports[0].code_version
        != load_yaml(tmp_path, "exports:\n  - {table: A, s3_path: a.csv, file_type: csv, csv_escape_formulas: true}\n")
        .exports[0]
        .code_version
    )  # changing the policy changes what the export produces
    message = problems_for(tmp_path, "exports:\n  - {table: C, s3_path: c.parquet, csv_escape_formulas: true}\n")
    assert "exports[0] (C).csv_escape_formulas: applies to file_type csv only, not 'parquet'" in message


def test_json_decimals_are_strings_unless_numbers_are_asked_for(tmp_path: Path):
    config = load_yaml(
        tmp_path,
        "exports:\n"
        "  - {table: A, s3_path: a.jsonl, file_type: json}\n"
        "  - {table: B, s3_path: b.jsonl, file_type: json, json_decimals: number}\n",
    )
    assert [dict(s.format_options) for s in config.exports] == [{"decimals": "string"}, {"decimals": "number"}]
    message = problems_for(
        tmp_path,
        "exports:\n"
        "  - {table: C, s3_path: c.csv, file_type: csv, json_decimals: number}\n"
        "  - {table: D, s3_path: d.jsonl, file_type: json, json_decimals: float}\n",
    )
    assert "exports[0] (C).json_decimals: applies to file_type json only, not 'csv'" in message
    assert "exports[1] (D).json_decimals: 'float' is not one of string, number" in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{table: A, s3_path: a.parquet, compression: zstd}", None),
        ("{table: A, s3_path: a.csv.gz, file_type: csv, compression: gzip}", None),
        ("{table: A, s3_path: a.jsonl.gz, file_type: json, compression: gzip}", None),
        ("{table: A, s3_path: a.csv, file_type: csv, compression: gzip}", "must end in .gz when compression is gzip"),
        ("{table: A, s3_path: a.csv.gz, file_type: csv}", "ends in .gz; add `compression: gzip`"),
        (
            "{table: A, s3_path: a.csv, file_type: csv, compression: zstd}",
            "compression: 'zstd' does not apply to csv; use one of none, gzip",
        ),
        (
            "{table: A, s3_path: a.parquet.gz, file_type: csv, compression: gzip}",
            "ends in '.parquet' but file_type is 'csv'",
        ),
        (
            "{table: A, s3_path: a.parquet, compression: lz5}",
            "exports[0] (A).compression: 'lz5' is not one of snappy, zstd, gzip, none",
        ),
    ],
)
def test_compression_settings(tmp_path: Path, entry: str, expected: str | None):
    text = f"exports:\n  - {entry}\n"
    if expected is None:
        spec = load_yaml(tmp_path, text).exports[0]
        assert spec.gzip == spec.s3_path.endswith(".gz")
    else:
        assert expected in problems_for(tmp_path, text)
