"""The export list's JSON Schema, generated from the list's own models, so that an editor validates
and completes `config/export_tables.yaml` (its first line names the schema for the YAML language
server) and the component's `defs.yaml` attributes are described field by field.

    python -m data_migration.config.schema > config/export_tables.schema.json

The schema says what the models accept field by field; the checks across fields and entries (a
`.gz` path with `compression: gzip`, a `{partition}` placeholder, two exports of one key) are the
list's loader's, which names the file, the entry and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_migration.config.fields import ExportEntry
from data_migration.config.loads import LoadEntry

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "export_tables.schema.json"


def inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` written in place (one self-contained schema)."""
    definitions = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(dict(definitions[node["$ref"].rsplit("/", 1)[-1]]))
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


def export_entry_schema() -> dict[str, Any]:
    return inlined(ExportEntry.model_json_schema())


def load_entry_schema() -> dict[str, Any]:
    return inlined(LoadEntry.model_json_schema(by_alias=True))


def export_list_schema() -> dict[str, Any]:
    """The whole list: `exports:` and `loads:`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "data-migration export list",
        "description": "Snowflake to S3 exports, each a Dagster asset, and loads back into Snowflake tables "
        "(config/export_tables.yaml; see the README).",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "exports": {
                "description": "The exports, each becoming an asset named after its table.",
                "type": ["array", "null"],
                "items": export_entry_schema(),
            },
            "loads": {
                "description": "Loads of Parquet files back into Snowflake tables, each an asset of its own.",
                "type": ["array", "null"],
                "items": load_entry_schema(),
            },
        },
    }


def schema_text() -> str:
    return json.dumps(export_list_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")


def _type_text(field: dict) -> str:
    """A field's JSON Schema type as the reference shows it: its values, or its types."""
    options = [option for option in field.get("anyOf", [field]) if option.get("type") != "null"]
    texts = []
    for option in options:
        if "enum" in option:
            texts.append(" \\| ".join(f"`{value}`" for value in option["enum"]))
        elif option.get("type") == "object" or "properties" in option:
            texts.append("object (below)")
        elif option.get("type") == "array":
            texts.append(f"list of {option.get('items', {}).get('type', 'values')}")
        elif "type" in option:
            texts.append(option["type"] if isinstance(option["type"], str) else " or ".join(option["type"]))
    return " or ".join(texts) or "any"


def _objects(field: dict) -> list[dict]:
    return [option for option in field.get("anyOf", [field]) if "properties" in option]


def _table(entry: dict) -> list[str]:
    required = set(entry.get("required", ()))
    lines = ["| field | required | type | default | what it does |", "|---|---|---|---|---|"]
    for name, field in entry["properties"].items():
        default = "" if "default" not in field or field["default"] is None else f"`{json.dumps(field['default'])}`"
        description = " ".join(field.get("description", "").split()).replace("|", "\\|")
        lines.append(
            f"| `{name}` | {'yes' if name in required else ''} | {_type_text(field)} | {default} | {description} |"
        )
    return lines


def markdown_reference() -> str:
    """The fields of an export and of a load, from the schema, as docs/export-list.md shows them."""
    schema = export_list_schema()
    lines: list[str] = []
    for section in ("exports", "loads"):
        entry = schema["properties"][section]["items"]
        lines += ["", f"### `{section}:` entries", "", *_table(entry)]
        for name, field in entry["properties"].items():
            for nested in _objects(field):
                lines += ["", f"`{name}:`", "", *_table(nested)]
    return "\n".join(lines).strip("\n") + "\n"
