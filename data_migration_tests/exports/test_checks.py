"""Asset checks: pass on good exports, fail (and block downstream) on short, altered or missing ones."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from data_migration.definitions import build_definitions
from data_migration.exports.checks import FULL_READ_BACK, READABLE, ROW_COUNT, SCHEMA
from data_migration.files import layout
from data_migration.files.formats import FORMATS
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import BUCKET, EXAMPLE_CONFIG, write_config


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(ALL_EXPORTS_JOB).execute_in_process(instance=instance, raise_on_error=False)


def run_checks_only(
    defs: dg.Definitions, instance: dg.DagsterInstance, key: str, full_read_back: bool = False
) -> dict[tuple[str, str], Any]:
    job = defs.resolve_implicit_global_asset_job_def()
    checks = [dg.AssetCheckKey(dg.AssetKey(key), name) for name in (READABLE, ROW_COUNT, SCHEMA)]
    config = {"ops": {f"{key}_checks": {"config": {FULL_READ_BACK: True}}}} if full_read_back else None
    result = job.get_subset(asset_selection=set(), asset_check_selection=set(checks)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=config
    )
    return evaluations(result)


def test_checks_pass_on_the_example_exports(production_env: dict):
    instance = dg.DagsterInstance.ephemeral()
    result = run_job(build_definitions(EXAMPLE_CONFIG, production_env), instance)
    assert result.success
    found = evaluations(result)
    assert len(found) == 12  # three checks for each of the four exports
    assert all(e.passed for e in found.values()), {k: e.description for k, e in found.items() if not e.passed}
    orders = found[("ORDERS", ROW_COUNT)]
    assert orders.metadata["object_rows"].value == orders.metadata["snowflake_rows"].value == 15000
    assert found[("ORDERS", SCHEMA)].description == "first materialization: nothing to compare"
    # The round trip's load has a check of its own: its rows against the export's.
    round_trip = run_job(build_definitions(EXAMPLE_CONFIG.parent / "round_trip.yaml", production_env), instance)
    assert round_trip.success
    loaded = evaluations(round_trip)
    assert len(loaded) == 4 and all(e.passed for e in loaded.values()), loaded
    assert {key for key, _ in loaded} == {"ORDERS", "ORDERS_RESTORED"}


@pytest.mark.parametrize("file_type, verify", [("csv", "full"), ("parquet", "metadata")])
def test_short_export_fails_the_blocking_check_and_stops_downstream(
    production_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_type: str, verify: str
):
    """A writer that silently drops a batch: the materialization looks fine, the check does not.
    At metadata cost a Parquet footer shows it (it states the rows the writer really wrote); a
    CSV or JSON Lines writer's own bug takes the full read-back (`verify: full`) to see."""
    entry = {"table": "LINEITEM", "s3_path": f"exports/lineitem.{file_type}", "file_type": file_type}
    config = write_config(tmp_path / "e.yaml", [{**entry, "verify": verify}])
    original = layout._Part.write  # where every batch (or its encoded bytes) reaches the writer
    seen: list[int] = []

    def drops_the_second_batch(self: Any, batch: pa.RecordBatch, encoded: Any = None) -> None:
        seen.append(batch.num_rows)
        if len(seen) != 2:
            original(self, batch, encoded)

    monkeypatch.setattr(layout._Part, "write", drops_the_second_batch)
    from data_migration.snowflake import queries as source

    monkeypatch.setattr(
        source, "iter_batches", lambda tables: (b for t in tables for b in t.to_batches(max_chunksize=10_000))
    )

    ran: list[bool] = []

    @dg.asset(deps=[dg.AssetKey("LINEITEM")])
    def downstream() -> None:
        ran.append(True)

    defs = build_definitions(config, production_env)
    defs = dg.Definitions.merge(defs, dg.Definitions(assets=[downstream]))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, raise_on_error=False)
    found = evaluations(result)
    row_count = found[("LINEITEM", ROW_COUNT)]
    assert not row_count.passed and row_count.severity == dg.AssetCheckSeverity.ERROR
    if verify == "full":
        assert row_count.metadata["snowflake_rows"].value == 60175  # TPC-H SF0.01 LINEITEM
        assert row_count.metadata["object_rows"].value == 60175 - seen[1]
        assert found[("LINEITEM", READABLE)].passed  # the object is intact, just short
    else:
        readable = found[("LINEITEM", READABLE)]
        assert not readable.passed
        assert readable.description.endswith(f"its footer states {60175 - seen[1]} rows, but 60175 were written")
    assert not ran  # blocked: downstream never read the short export
    assert "downstream" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert not result.success
    failure = "\n".join(e.event_specific_data.error.to_string() for e in result.get_step_failure_events())
    if verify == "full":
        assert "1 blocking asset check failed with ERROR severity" in failure
        assert "LINEITEM: row_count_matches_source" in failure
    else:
        assert "2 blocking asset checks failed with ERROR severity" in failure
        assert "LINEITEM: readable,row_count_matches_source" in failure


def test_object_changed_after_export_fails_readable_and_row_count(production_env: dict, s3: Any, tmp_path: Path):
    config = write_config(
        tmp_path / "e.yaml", [{"table": "NATION", "s3_path": "exports/nation.json", "file_type": "json"}]
    )
    defs = build_definitions(config, production_env)
    instance = dg.DagsterInstance.ephemeral()
    assert run_job(defs, instance).success
    body = s3.get_object(Bucket=BUCKET, Key="exports/nation.json")["Body"].read()
    truncated = b"".join(body.splitlines(keepends=True)[:20])
    s3.put_object(Bucket=BUCKET, Key="exports/nation.json", Body=truncated)
    found = run_checks_only(defs, instance, "NATION")  # by default: size and CRC32, from one HEAD
    assert not found[("NATION", READABLE)].passed
    uri = f"s3://{BUCKET}/exports/nation.json"
    assert found[("NATION", READABLE)].description == f"{uri} is {len(truncated)} bytes, but {len(body)} were written"
    assert not found[("NATION", ROW_COUNT)].passed
    found = run_checks_only(defs, instance, "NATION", full_read_back=True)  # downloads and parses it
    assert not found[("NATION", READABLE)].passed
    assert "but the materialization recorded" in found[("NATION", READABLE)].description
    assert not found[("NATION", ROW_COUNT)].passed
    assert found[("NATION", ROW_COUNT)].description == "20 rows in the object, 25 reported by Snowflake"

    # The same size, one byte changed: the CRC32 S3 keeps differs from the one recorded.
    flipped = body.replace(b"ALGERIA", b"ALGERIa", 1)
    s3.put_object(Bucket=BUCKET, Key="exports/nation.json", Body=flipped)
    found = run_checks_only(defs, instance, "NATION")
    assert not found[("NATION", READABLE)].passed
    assert found[("NATION", READABLE)].description.endswith("it changed after it was written")
    assert found[("NATION", READABLE)].metadata["verification"].value == "metadata"

    s3.delete_object(Bucket=BUCKET, Key="exports/nation.json")
    found = run_checks_only(defs, instance, "NATION")
    assert not found[("NATION", READABLE)].passed
    assert found[("NATION", READABLE)].description == f"{uri} does not exist"
    found = run_checks_only(defs, instance, "NATION", full_read_back=True)
    assert "could not be read back" in found[("NATION", READABLE)].description


def test_schema_drift_is_a_warning(production_env: dict, tmp_path: Path):
    instance = dg.DagsterInstance.ephemeral()
    path = tmp_path / "e.yaml"
    before = {"table": "REGION", "s3_path": "exports/region.parquet", "query": "select R_REGIONKEY, R_NAME from region"}
    write_config(path, [before])
    first = evaluations(run_job(build_definitions(path, production_env), instance))
    assert first[("REGION", SCHEMA)].passed
    write_config(path, [{**before, "query": "select R_REGIONKEY, R_COMMENT from region"}])
    result = run_job(build_definitions(path, production_env), instance)
    assert result.success  # a warning does not fail the run
    drift = evaluations(result)[("REGION", SCHEMA)]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.description == (
        "schema drift since the previous materialization: added: R_COMMENT VARCHAR; removed: R_NAME VARCHAR"
    )


def test_checks_before_any_materialization(production_env: dict, tmp_path: Path):
    config = write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "r.parquet"}])
    found = run_checks_only(build_definitions(config, production_env), dg.DagsterInstance.ephemeral(), "REGION")
    assert not found[("REGION", READABLE)].passed
    assert found[("REGION", READABLE)].description == "the export has not been materialized yet"


GOOD = pa.RecordBatch.from_pylist([{"A": i, "B": f"x{i}"} for i in range(100)])


def written(file_type: str) -> bytes:
    sink = io.BytesIO()
    writer = FORMATS[file_type].writer(sink, GOOD.schema)
    writer.write_batch(GOOD)
    writer.close()
    return sink.getvalue()


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_count_rows_parses_every_row(file_type: str):
    assert FORMATS[file_type].reader.count_rows(io.BytesIO(written(file_type))) == 100


@pytest.mark.parametrize(
    ("file_type", "cut"),
    [("parquet", 0.5), ("parquet", 0.99), ("csv", 0.5), ("json", 0.5), ("json", 0.999)],
)
def test_count_rows_rejects_a_truncated_file(file_type: str, cut: float):
    data = written(file_type)
    data = data[: int(len(data) * cut)]
    if file_type == "csv":
        data = data + b'"unterminated'  # a record cut mid-field
    with pytest.raises(Exception):  # noqa: B017 - each format's reader raises its own parse error
        FORMATS[file_type].reader.count_rows(io.BytesIO(data))
