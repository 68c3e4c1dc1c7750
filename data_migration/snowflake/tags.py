"""The QUERY_TAG of each session, JSON that names the app, and the export or load and the run, so
that Snowflake's QUERY_HISTORY finds every statement the project sent for one of them."""

from __future__ import annotations

import json

from data_migration.config import ExportSpec, LoadSpec
from data_migration.config.names import string_literal

QUERY_TAG = json.dumps({"app": "data-migration"})  # every session's, until an export or load sets its own


def set_query_tag(tag: str) -> str:
    """The statement that labels a session's queries in QUERY_HISTORY."""
    return f"ALTER SESSION SET QUERY_TAG = {string_literal(tag)}"


def query_tag(spec: ExportSpec, run_id: str) -> str:
    """JSON naming the export and the run, for finding its queries in Snowflake's QUERY_HISTORY."""
    asset = "/".join(spec.asset_key_path)[:1000]  # QUERY_TAG holds at most 2000 characters
    return json.dumps(
        {"app": "data-migration", "asset": asset, "run_id": run_id, "code_version": spec.code_version},
        separators=(",", ":"),
    )


def load_query_tag(spec: LoadSpec, run_id: str) -> str:
    return json.dumps(
        {"app": "data-migration", "load": "/".join(spec.asset_key_path)[:1000], "run_id": run_id},
        separators=(",", ":"),
    )
