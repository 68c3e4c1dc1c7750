"""The export list's JSON Schema (config/export_tables.schema.json): generated from the list's
models, committed, named on the example list's first line for editors, and describing every field."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
import yaml

from data_migration.components import EXAMPLE
from data_migration.config.schema import SCHEMA_PATH, export_list_schema, schema_text
from data_migration_tests.support import EXAMPLE_CONFIG, PROJECT_ROOT


def test_the_committed_schema_is_the_generated_one():
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "config/export_tables.schema.json is stale: .venv/bin/python -m data_migration.config.schema "
        "> config/export_tables.schema.json, and commit it"
    )
    assert EXAMPLE_CONFIG.read_text().splitlines()[0] == "# yaml-language-server: $schema=./export_tables.schema.json"


def example_lists() -> list[tuple[str, Any]]:
    """Every export list the repository shows: config/*.yaml, the README's YAML blocks of a list,
    and the attributes of the component's scaffolded defs.yaml."""
    found = [(str(path.relative_to(PROJECT_ROOT)), yaml.safe_load(path.read_text())) for path in
             sorted((PROJECT_ROOT / "config").glob("*.yaml"))]  # fmt: skip
    readme = (PROJECT_ROOT / "README.md").read_text()
    for index, block in enumerate(re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)):
        document = yaml.safe_load(block)
        if isinstance(document, dict) and set(document) <= {"exports", "loads"}:
            found.append((f"README.md yaml block {index}", document))
    found.append(("components.EXAMPLE", yaml.safe_load(EXAMPLE.format(name="nightly"))["attributes"]))
    return found


@pytest.mark.parametrize(
    ("where", "document"), example_lists(), ids=lambda value: value if isinstance(value, str) else ""
)
def test_every_example_list_in_the_repository_follows_the_schema(where: str, document: Any):
    jsonschema.validate(document, export_list_schema())


def test_the_schema_refuses_what_the_list_refuses_field_by_field():
    validator = jsonschema.Draft202012Validator(export_list_schema())
    bad = {"exports": [{"table": "ORDERS", "s3_path": "o.xlsx", "file_type": "xlsx", "colour": "red"}]}
    problems = sorted(error.message for error in validator.iter_errors(bad))
    assert any("'xlsx' is not one of" in problem for problem in problems), problems
    assert any("'colour' was unexpected" in problem for problem in problems), problems


def test_every_field_has_a_description_and_fixed_defaults_are_given():
    schema = export_list_schema()
    missing = []

    def walk(node: Any, where: str) -> None:
        for name, field in (node.get("properties") or {}).items():
            if not field.get("description"):
                missing.append(f"{where}.{name}")
            for option in [field, *field.get("anyOf", [])]:
                walk(option, f"{where}.{name}")
                if option.get("items"):
                    walk(option["items"], f"{where}.{name}[]")

    walk(schema, "list")
    assert not missing, missing
    exports = schema["properties"]["exports"]["items"]["properties"]
    assert {name: exports[name]["default"] for name in ("file_type", "verify", "method", "row_group_rows")} == {
        "file_type": "parquet",
        "verify": "metadata",
        "method": "stream",
        "row_group_rows": 250_000,
    }
