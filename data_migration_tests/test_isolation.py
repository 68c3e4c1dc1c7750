"""Blast radius: one export failing in a run leaves the others exactly as a clean run makes them.

Four exports run in one job, first cleanly, then with one of them (the victim) failing in one of
several ways. The other three must succeed with objects byte-identical to the clean run's, and
the one failure must name the export, the destination and the error class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from data_migration.definitions import build_definitions
from data_migration.files.storage import S3ObjectStore
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import BUCKET, Snowflake, write_config

MARKER = "/* victim */"
VICTIM_KEY = "exports/victim/data.csv"
OTHERS = [
    {"table": "NATION", "s3_path": "exports/nation/data.parquet"},
    {"table": "REGION", "s3_path": "exports/region/data.jsonl", "file_type": "json"},
    {"table": "SUPPLIER", "s3_path": "exports/supplier/data.csv", "file_type": "csv"},
]


def victim(query: str = f"SELECT {MARKER} * FROM CUSTOMER ORDER BY C_CUSTKEY") -> dict[str, Any]:
    return {"table": "VICTIM", "s3_path": VICTIM_KEY, "file_type": "csv", "query": query}


def run(config: Path, env: dict) -> dg.ExecuteInProcessResult:
    job = build_definitions(config, env).resolve_job_def(ALL_EXPORTS_JOB)
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def objects(s3: Any) -> dict[str, str]:
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {
        o["Key"]: hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()).hexdigest() for o in listing
    }


def corrupt_the_victims_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    """One bit flipped between the victim's writer and boto3, after the writer's checksums."""
    original = S3ObjectStore.open_write

    @contextmanager
    def open_write(self: S3ObjectStore, key: str, content_type: str) -> Iterator[Any]:
        with original(self, key, content_type) as sink:
            if key == VICTIM_KEY:
                tee = sink._target
                pipe = tee._target

                class Flip:
                    flipped = False

                    def write(self, data: Any) -> int:
                        view = bytes(memoryview(data).cast("B"))
                        if view and not Flip.flipped:
                            view, Flip.flipped = bytes([view[0] ^ 0x01]) + view[1:], True
                        return pipe.write(view)

                tee._target = Flip()
            yield sink

    monkeypatch.setattr(S3ObjectStore, "open_write", open_write)


@pytest.mark.parametrize("fault", ["sql_error", "snowflake_503", "crc_mismatch"])
def test_one_failure_leaves_the_others_byte_identical(
    production_env: dict,
    s3: Any,
    fake_snowflake: Snowflake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    request: pytest.FixtureRequest,
):
    env = {**production_env, "DATA_MIGRATION_MAX_RETRIES": "0", "SNOWFLAKE_QUERY_TIMEOUT": "3"}
    for name in ("DATA_MIGRATION_MAX_RETRIES", "SNOWFLAKE_QUERY_TIMEOUT"):
        monkeypatch.setenv(name, env[name])
    clean = run(write_config(tmp_path / "clean.yaml", [*OTHERS, victim()]), env)
    assert clean.success
    before = objects(s3)
    assert len(before) == 4

    entries = [*OTHERS, victim()]
    if fault == "sql_error":
        entries[-1] = victim(f"SELECT {MARKER} * FROM NO_SUCH_TABLE")
        expected = "failed in Snowflake (ProgrammingError)"
    elif fault == "snowflake_503":
        monkeypatch.setattr(fake_snowflake.recorder, "fail_first_session_for", MARKER)
        monkeypatch.setattr(fake_snowflake.recorder, "failing_session", None)
        expected = "failed in Snowflake"
    else:
        request.getfixturevalue("s3_checks_sent_checksums")  # moto refuses a bad CRC32 as S3 does
        corrupt_the_victims_upload(monkeypatch)
        expected = f"to s3://{BUCKET}/{VICTIM_KEY} failed (StorageError)"
    faulted = run(write_config(tmp_path / "faulted.yaml", entries), env)

    assert not faulted.success
    failures = faulted.get_step_failure_events()
    assert [f.step_key for f in failures] == ["VICTIM"]
    message = failures[0].event_specific_data.error.to_string()
    assert "export VICTIM" in message and expected in message, message
    succeeded = {e.step_key for e in faulted.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert {"NATION", "REGION", "SUPPLIER"} <= succeeded
    assert {e.asset_key.to_user_string() for e in faulted.get_asset_materialization_events()} == {
        "NATION",
        "REGION",
        "SUPPLIER",
    }
    after = objects(s3)
    assert {k: v for k, v in after.items() if k != VICTIM_KEY} == {k: v for k, v in before.items() if k != VICTIM_KEY}
    assert after[VICTIM_KEY] == before[VICTIM_KEY]  # the victim's previous export, untouched
