"""The export list as a Dagster component: `data_migration.ExportsComponent`, so that each team
keeps its own list in a `defs.yaml` of its own (`dg scaffold defs data_migration.ExportsComponent
nightly` writes `data_migration/lists/nightly/defs.yaml`), modelled on dagster-sling's
SlingReplicationCollectionComponent.

Its attributes take the export list's own shape: `exports:` and `loads:` with exactly the fields
of config/export_tables.yaml, checked by the same code with the same messages (naming the
defs.yaml, the entry and the field), or `path:` to a list file relative to the defs.yaml. The
JSON schema `dg check yaml` reads describes every field (the list's own models'). Each list's jobs
and schedules are named after its folder (`nightly_all_exports`), so lists cannot collide; the
resources, the executor and the sensors are the code location's, defined once (definitions.py),
which also refuses two lists that define the same asset.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import dagster as dg
from pydantic import Field, WithJsonSchema

from data_migration.config import ConfigError, ExportsConfig, load_exports, parse_exports
from data_migration.config.lists import entry_lines
from data_migration.config.problems import dagster_name
from data_migration.config.schema import export_entry_schema, load_entry_schema
from data_migration.definitions import list_definitions

_EXPORTS_SCHEMA = {"type": "array", "items": export_entry_schema()}
_LOADS_SCHEMA = {"type": "array", "items": load_entry_schema()}

EXAMPLE = """\
type: data_migration.ExportsComponent

# A list of its own: the same fields as config/export_tables.yaml (see the README's "Export list").
# Its jobs and schedules are named after this folder ({name}_all_exports, …).
attributes:
  exports:
    - table: NATION
      s3_path: exports/{name}/nation/data.parquet
      schedule: "0 5 * * *"
      skip_unchanged: true          # no query and nothing written when NATION has not changed
      freshness: {{fail_after: 26h, warn_after: 25h}}
    - table: REGION
      s3_path: exports/{name}/region.csv
      file_type: csv
  # Or a list file beside this defs.yaml instead of `exports:` and `loads:`:
  # path: export_tables.yaml
"""


class ExportsScaffolder(dg.Scaffolder):
    """`dg scaffold defs data_migration.ExportsComponent NAME`: a defs.yaml that works as written
    on the embedded default (NATION and REGION are TPC-H tables)."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(EXAMPLE.format(name=request.target_path.name))


@dg.scaffold_with(ExportsScaffolder)
class ExportsComponent(dg.Component, dg.Resolvable, dg.Model):
    """Snowflake to S3 exports (and loads back) from an export list: one asset per export and
    load, with their checks, jobs and schedules, and the Snowflake tables they read as observed
    source assets."""

    exports: Annotated[list[dict[str, Any]] | None, WithJsonSchema(_EXPORTS_SCHEMA)] = Field(
        default=None, description="The exports, each with the fields of an entry of config/export_tables.yaml."
    )
    loads: Annotated[list[dict[str, Any]] | None, WithJsonSchema(_LOADS_SCHEMA)] = Field(
        default=None, description="The loads back into Snowflake, as in config/export_tables.yaml's `loads:`."
    )
    path: str | None = Field(
        default=None,
        description="Instead of `exports:` and `loads:`: an export list file, relative to this defs.yaml.",
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Job and schedule names take letters, digits and _ only: a folder `team-b` names `team_b_all_exports`.
        prefix = dagster_name(context.path.name) + "_"
        return list_definitions(self.export_list(context), os.environ, prefix=prefix)

    def export_list(self, context: Any) -> ExportsConfig:
        """The list, validated as config/export_tables.yaml is: every problem at once, naming the file."""
        here = context.path / "defs.yaml"
        if self.path is not None:
            if self.exports is not None or self.loads is not None:
                raise ConfigError(here, ["attributes: give `path` or `exports:` (and `loads:`), not both"])
            return load_exports(context.path / self.path)
        document: dict[str, Any] = {"exports": self.exports or []}
        if self.loads is not None:
            document["loads"] = self.loads
        text = here.read_text(encoding="utf-8") if here.is_file() else ""
        lines = entry_lines(text, "exports", "attributes"), entry_lines(text, "loads", "attributes")
        return parse_exports(document, here, *lines)
