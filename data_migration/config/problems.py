"""What every part of the list reports problems with: the error that names them all, and the
helpers that word one field's problem (a pydantic error, a column name)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from data_migration.config.names import Identifier, SqlError, parse_object_name

# What Dagster accepts in an asset key part; a table name must be one to become an asset.
DAGSTER_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def dagster_name(text: str) -> str:
    """`text` with every character DAGSTER_NAME does not allow written as `_`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


class ConfigError(ValueError):
    """The export list is unusable; `problems` holds one line per problem found."""

    def __init__(self, path: Path | str, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{self.path}: {p}" for p in self.problems]
        super().__init__(
            f"{len(lines)} problem(s) in the export list:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
        )


def describe(detail: dict[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as the list's own words; `model` is the model the field belongs to."""
    kind = detail["type"]
    if kind == "extra_forbidden":
        fields = [field.alias or name for name, field in model.model_fields.items()]
        return f"unknown field (allowed: {', '.join(fields)})"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        allowed = get_args(model.model_fields[str(detail["loc"][-1])].annotation)
        values = [value for option in allowed for value in (get_args(option) or (option,)) if value is not type(None)]
        return f"{detail['input']!r} is not one of {', '.join(map(str, values))}"
    return f"{detail['msg'].lower()} (got {detail['input']!r})"


def one_column(text: str, where: str, problems: list[str]) -> Identifier | None:
    """A column of the export's result, written as an identifier (quoted or not)."""
    try:
        name = parse_object_name(text)
    except SqlError as error:
        problems.append(f"{where}: {error}")
        return None
    if len(name) > 1:
        problems.append(f"{where}: {text!r} must be one column name of the result, not a qualified name")
        return None
    return name[0]


def valid_cron(cron: str) -> bool:
    from data_migration.dagster_private import is_valid_cron_string  # imports Dagster: only when needed

    return is_valid_cron_string(cron)
