"""End to end through Dagster: fakesnow's server -> the real connector -> the IO managers -> moto.

Outputs are read back from S3 with independent readers and compared with what the same query
returns from the emulator.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from data_migration.config import load_exports
from data_migration.definitions import build_definitions
from data_migration.exports.assets import build_export_assets
from data_migration.files.formats import FORMATS
from data_migration.resources import SettingsError, deployment_from_env
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import (
    AWS_SECRET_CANARY,
    BUCKET,
    EXAMPLE_CONFIG,
    SNOWFLAKE_PASSWORD_CANARY,
    Snowflake,
    write_config,
)


def run_all(defs: dg.Definitions, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(ALL_EXPORTS_JOB)
    return job.execute_in_process(instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


def s3_bytes(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.event_specific_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


def test_example_exports_land_in_s3_exactly(production_env: dict, s3: Any, fake_snowflake: Snowflake):
    before = len(fake_snowflake.recorder.queries)
    result = run_all(build_definitions(EXAMPLE_CONFIG, production_env))
    assert result.success
    metadata = materializations(result)
    assert set(metadata) == {"ORDERS", "CUSTOMER", "RECENT_ORDERS", "ORDER_SUMMARY"}
    # The shipped list writes nothing to the account: every statement it sends reads.
    sent = fake_snowflake.recorder.queries[before:]
    writing = re.compile(r"\s*(CREATE|INSERT|MERGE|COPY|DELETE|UPDATE|TRUNCATE|DROP|PUT|BEGIN)\b", re.IGNORECASE)
    writes = [q for q in sent if writing.match(q)]
    assert sent and not writes, writes

    specs = {spec.table: spec for spec in load_exports(EXAMPLE_CONFIG).exports}
    for table, spec in specs.items():
        data = s3_bytes(s3, spec.s3_path)
        source = fake_snowflake.arrow(spec.sql)
        if spec.file_type == "parquet":
            landed = pq.read_table(io.BytesIO(data))
            assert landed.num_rows == source.num_rows
            assert landed.sort_by(landed.schema.names[0]).equals(
                source.cast(landed.schema).sort_by(landed.schema.names[0])
            ), table
        else:
            landed = FORMATS["csv"].reader.read(io.BytesIO(data))
            assert landed.num_rows == source.num_rows
            assert sorted(landed.column("O_CUSTKEY").to_pylist()) == sorted(source.column("O_CUSTKEY").to_pylist())
        md = metadata[table]
        assert md["dagster/row_count"] == source.num_rows
        assert md["dagster/uri"] == f"s3://{BUCKET}/{spec.s3_path}"
        assert md["size_bytes"] == len(data) == s3.head_object(Bucket=BUCKET, Key=spec.s3_path)["ContentLength"]
        assert md["file_type"] == spec.file_type
        assert md["query"] == f"```sql\n{spec.sql}\n```"
        assert md["elapsed_seconds"] >= 0 and len(md["sha256"]) == 64
        seconds = max(md["elapsed_seconds"], 1e-3)
        # Rounded to 0.1 and 0.001: half a unit, plus room for the float sitting exactly on it.
        assert md["rows_per_second"] == pytest.approx(source.num_rows / seconds, abs=0.051)
        assert md["megabytes_per_second"] == pytest.approx(len(data) / 1e6 / seconds, abs=0.00051)
        assert md["snowflake_query_id"] not in ("", "unknown")
        assert [c.name for c in md["dagster/column_schema"].columns] == source.schema.names

    orders = metadata["ORDERS"]
    assert orders["dagster/row_count"] == 15000  # TPC-H SF0.01
    types = {c.name: c.type for c in orders["dagster/column_schema"].columns}
    assert types["O_TOTALPRICE"] == "NUMBER(15,2)"
    assert len(orders["preview"].records) == 10
    assert metadata["RECENT_ORDERS"]["dagster/row_count"] > 0  # dates are shifted to now
    # Parquet keeps decimals as decimals.
    schema = pq.read_schema(io.BytesIO(s3_bytes(s3, "exports/orders/data.parquet")))
    assert str(schema.field("O_TOTALPRICE").type) == "decimal128(15, 2)"


def test_whole_table_sql_is_quoted_and_sent_once(production_env: dict, fake_snowflake: Snowflake, tmp_path: Path):
    config = write_config(tmp_path / "e.yaml", [{"table": "nation", "s3_path": "exports/nation.parquet"}])
    before = len(fake_snowflake.recorder.queries)
    assert run_all(build_definitions(config, production_env)).success
    sent = fake_snowflake.recorder.queries[before:]
    assert len(sent) == 2 and sent[1] == 'SELECT * FROM "NATION"'  # one export query ...
    assert sent[0].startswith("ALTER SESSION SET QUERY_TAG = '")  # ... labelled for QUERY_HISTORY first


def test_every_session_is_tagged_for_audit(production_env: dict, fake_snowflake: Snowflake, tmp_path: Path):
    from data_migration.config import load_exports

    config = write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "exports/region.parquet"}])
    before = len(fake_snowflake.recorder.queries)
    logins = len(fake_snowflake.recorder.login_parameters)
    result = run_all(build_definitions(config, production_env))
    assert result.success
    (statement,) = [q for q in fake_snowflake.recorder.queries[before:] if q.startswith("ALTER SESSION")]
    literal = statement.removeprefix("ALTER SESSION SET QUERY_TAG = ")
    assert literal[0] == literal[-1] == "'" and "\\" not in literal
    tag = json.loads(literal[1:-1])
    spec = load_exports(config).exports[0]
    assert tag == {
        "app": "data-migration",
        "asset": "REGION",
        "run_id": result.run_id,
        "code_version": spec.code_version,
    }
    assert len(literal) <= 2000 and SNOWFLAKE_PASSWORD_CANARY not in statement
    # And the session itself carries the application's tag from login.
    session = fake_snowflake.recorder.login_parameters[logins:]
    assert session and all(json.loads(p["QUERY_TAG"]) == {"app": "data-migration"} for p in session)
    assert all(p["TIMEZONE"] == "UTC" for p in session)  # partition windows and CURRENT_DATE mean UTC


def test_one_failing_export_does_not_stop_the_others(production_env: dict, s3: Any, tmp_path: Path):
    config = write_config(
        tmp_path / "e.yaml",
        [
            {"table": "NATION", "s3_path": "exports/nation/data.parquet"},
            {"table": "MISSING_TABLE", "s3_path": "exports/missing/data.parquet"},
            {"table": "REGION", "s3_path": "exports/region/data.json", "file_type": "json"},
        ],
    )
    result = run_all(build_definitions(config, production_env))
    assert not result.success
    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["MISSING_TABLE"]
    assert "MISSING_TABLE" in failures[0].event_specific_data.error.to_string()
    assert set(materializations(result)) == {"NATION", "REGION"}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {"exports/nation/data.parquet", "exports/region/data.json"}
    regions = [json.loads(line) for line in s3_bytes(s3, "exports/region/data.json").decode().splitlines()]
    assert sorted(r["R_NAME"] for r in regions) == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]


def test_failure_mid_upload_keeps_previous_object(
    production_env: dict, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = write_config(
        tmp_path / "e.yaml", [{"table": "LINEITEM", "s3_path": "exports/lineitem/data.csv", "file_type": "csv"}]
    )
    s3.put_object(Bucket=BUCKET, Key="exports/lineitem/data.csv", Body=b"previous,good\n1,2\n")
    writer = FORMATS["csv"].writer
    written = []

    def failing_write(self: Any, data: Any) -> None:  # CSV batches arrive encoded (files/pipeline.py)
        if written:
            raise OSError("disk on fire")
        written.append(len(data))
        original(self, data)

    original = writer.write_encoded
    monkeypatch.setattr(writer, "write_encoded", failing_write)
    # Small batches, so the failure comes after some bytes have gone to the upload.
    from data_migration.snowflake import queries as source

    monkeypatch.setattr(
        source, "iter_batches", lambda tables: (b for t in tables for b in t.to_batches(max_chunksize=1000))
    )
    result = run_all(build_definitions(config, production_env))
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert f"export LINEITEM to s3://{BUCKET}/exports/lineitem/data.csv failed (OSError): disk on fire" in message
    assert s3_bytes(s3, "exports/lineitem/data.csv") == b"previous,good\n1,2\n"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_load_input_reads_an_export_back_as_a_dataframe(production_env: dict, tmp_path: Path):
    config = write_config(
        tmp_path / "e.yaml",
        [
            {"table": "NATION", "s3_path": "exports/nation/data.parquet"},
            {"table": "REGION", "s3_path": "exports/region/data.csv", "file_type": "csv"},
            {"table": "SUPPLIER", "s3_path": "exports/supplier/data.json", "file_type": "json"},
        ],
    )
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(
        ins={
            "nation": dg.AssetIn(key="NATION"),
            "region": dg.AssetIn(key="REGION"),
            "supplier": dg.AssetIn(key="SUPPLIER"),
        }
    )
    def downstream(nation: pd.DataFrame, region: pd.DataFrame, supplier: pd.DataFrame) -> None:
        seen.update(nation=nation, region=region, supplier=supplier)

    exports = build_export_assets(load_exports(config).exports)
    resources = deployment_from_env(production_env).resources
    result = dg.materialize([*exports, downstream], resources={**resources, "io_manager": dg.mem_io_manager})
    assert result.success
    assert len(seen["nation"]) == 25 and list(seen["nation"].columns)[:2] == ["N_NATIONKEY", "N_NAME"]
    assert sorted(seen["region"]["R_NAME"]) == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
    assert len(seen["supplier"]) == 100


def test_secrets_stay_out_of_logs_and_metadata(production_env: dict, tmp_path: Path, capfd: pytest.CaptureFixture):
    config = write_config(
        tmp_path / "e.yaml",
        [
            {"table": "REGION", "s3_path": "exports/region.parquet"},
            {"table": "NOPE", "s3_path": "exports/nope.parquet"},
        ],
    )
    instance = dg.DagsterInstance.ephemeral()
    result = run_all(build_definitions(config, production_env), instance)
    assert not result.success  # the failure path is swept too
    surfaces = [str(entry) for entry in instance.all_logs(result.run_id)]
    surfaces += [str(materializations(result))]
    captured = capfd.readouterr()
    surfaces += [captured.out, captured.err]
    for text in surfaces:
        assert SNOWFLAKE_PASSWORD_CANARY not in text
        assert AWS_SECRET_CANARY not in text


def test_asset_definitions_show_kinds_description_and_code_version(production_env: dict):
    defs = build_definitions(EXAMPLE_CONFIG, production_env)
    orders = defs.resolve_assets_def("ORDERS")
    spec = next(iter(orders.specs))
    assert spec.kinds == {"snowflake", "s3", "parquet"}
    assert spec.group_name == "snowflake_exports"
    assert 'SELECT * FROM "ORDERS"' in spec.description
    assert spec.code_version and len(spec.code_version) == 16
    summary = next(iter(defs.resolve_assets_def("ORDER_SUMMARY").specs))
    assert summary.kinds == {"snowflake", "s3", "csv"}
    assert "GROUP BY O_CUSTKEY" in summary.description


def _cell(value: Any) -> Any:
    """A source value as text, the way CSV and JSON Lines carry it."""
    import datetime as dt
    from decimal import Decimal

    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


@pytest.mark.parametrize("file_type", ["parquet", "csv", "json"])
def test_every_cell_matches_the_source_in_each_format(
    production_env: dict, s3: Any, fake_snowflake: Snowflake, tmp_path: Path, file_type: str
):
    """ORDERS (integers, decimals, dates, text) through each format, compared cell by cell."""
    import csv

    key = f"exports/orders/data.{file_type}"
    config = write_config(tmp_path / "e.yaml", [{"table": "ORDERS", "s3_path": key, "file_type": file_type}])
    assert run_all(build_definitions(config, production_env)).success
    source = fake_snowflake.arrow('SELECT * FROM "ORDERS"')
    expected = sorted(source.to_pylist(), key=lambda r: r["O_ORDERKEY"])
    data = s3_bytes(s3, key)
    if file_type == "parquet":
        landed = sorted(pq.read_table(io.BytesIO(data)).to_pylist(), key=lambda r: r["O_ORDERKEY"])
        assert landed == expected
        return
    if file_type == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    else:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert len(rows) == len(expected) == 15000
    landed = sorted(rows, key=lambda r: int(r["O_ORDERKEY"]))
    for got, want in zip(landed, expected, strict=True):
        for column, value in want.items():
            cell = _cell(value)
            if file_type == "csv":
                cell = str(cell)  # CSV is text, exactly the source's ("- ironic gifts ..." too); no NULLs in TPC-H
            assert got[column] == cell, (column, got[column], cell)


@pytest.mark.parametrize(
    ("file_type", "s3_path", "compression"),
    [
        ("parquet", "exports/o.parquet", "zstd"),
        ("csv", "exports/o.csv.gz", "gzip"),
        ("json", "exports/o.jsonl.gz", "gzip"),
    ],
)
def test_compressed_exports(
    production_env: dict, s3: Any, tmp_path: Path, file_type: str, s3_path: str, compression: str
):
    import gzip

    entry = {"table": "ORDERS", "s3_path": s3_path, "file_type": file_type, "compression": compression}
    config = write_config(tmp_path / "e.yaml", [entry])
    result = run_all(build_definitions(config, production_env))
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())  # the checks read it back too
    data = s3_bytes(s3, s3_path)
    if file_type == "parquet":
        metadata = pq.ParquetFile(io.BytesIO(data)).metadata
        assert metadata.row_group(0).column(0).compression == "ZSTD"
        assert metadata.num_rows == 15000
    else:
        assert s3.head_object(Bucket=BUCKET, Key=s3_path)["ContentType"] == "application/gzip"
        text = gzip.decompress(data).decode("utf-8")  # an independent gunzip
        assert text.count("\n") == 15000 + (1 if file_type == "csv" else 0)
    # load_input gives downstream assets the rows, decompressed.
    from dagster_aws.s3 import S3Resource

    from data_migration.exports.io_managers import ExportIOManager
    from data_migration.files.storage import S3ObjectStore

    store = S3ObjectStore(
        s3=S3Resource(
            endpoint_url=production_env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ),
        bucket=BUCKET,
    )
    upstream = dg.build_output_context(definition_metadata={"s3_path": s3_path, "gzip": compression == "gzip"})
    frame = ExportIOManager(store=store, file_type=file_type).load_input(
        dg.build_input_context(upstream_output=upstream)
    )
    assert len(frame) == 15000 and "O_ORDERKEY" in frame.columns
    # An unchanged rerun writes the same bytes (gzip without a timestamp).
    assert run_all(build_definitions(config, production_env)).success
    assert s3_bytes(s3, s3_path) == data


@pytest.mark.parametrize("switch", ["per_export", "global"])
def test_the_preview_can_be_turned_off_keeping_row_values_out_of_the_event_log(
    production_env: dict, tmp_path: Path, switch: str
):
    """The 10-row preview puts real rows (personal data) into Dagster's event log: `preview:
    false` on an export, or DATA_MIGRATION_PREVIEW=off for every export, leaves it out; the other
    metadata (rows, schema, checks) stays (issue 34, item 9)."""
    private = {"table": "REGION", "s3_path": "exports/region.parquet"}
    env = dict(production_env)
    if switch == "per_export":
        private["preview"] = False
    else:
        env["DATA_MIGRATION_PREVIEW"] = "off"
    config = write_config(tmp_path / "e.yaml", [private, {"table": "NATION", "s3_path": "exports/nation.parquet"}])
    instance = dg.DagsterInstance.ephemeral()
    result = run_all(build_definitions(config, env), instance)
    assert result.success
    shown = materializations(result)
    assert "preview" not in shown["REGION"] and shown["REGION"]["dagster/row_count"] == 5
    assert ("preview" in shown["NATION"]) is (switch == "per_export")
    # No value of REGION's rows anywhere in the run's event log (NATION's preview has none either).
    logs = [str(entry) for entry in instance.all_logs(result.run_id)]
    assert not [text for text in logs if "AFRICA" in text or "MIDDLE EAST" in text]
    if switch == "per_export":
        assert any("ALGERIA" in text for text in logs)  # the default still shows NATION's rows
    with pytest.raises(SettingsError, match="DATA_MIGRATION_PREVIEW='no' must be on or off"):
        deployment_from_env({**production_env, "DATA_MIGRATION_PREVIEW": "no"})


def test_metadata_rewritten_after_the_list_does_not_move_where_an_export_writes(
    production_env: dict, tmp_path: Path, s3: Any
):
    """The IO manager writes where the typed spec of the list says, not where the asset's metadata
    says: metadata is for people, and a component's post_processing or a translator may rewrite it
    (here as post_processing does, through the asset specs) (issue 34, the spec behind the IO manager)."""
    config = write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "exports/region.parquet"}])
    defs = build_definitions(config, production_env)
    rewritten = dg.map_asset_specs(
        lambda spec: spec.merge_attributes(metadata={"s3_path": "exports/elsewhere.csv", "gzip": True}),
        [
            asset
            for asset in defs.assets or []
            if isinstance(asset, dg.AssetsDefinition) and asset.key.path == ["REGION"]
        ],
    )
    (asset,) = rewritten
    assert asset.specs_by_key[dg.AssetKey("REGION")].metadata["s3_path"] == "exports/elsewhere.csv"
    result = dg.materialize([asset], resources=deployment_from_env(production_env).resources, raise_on_error=False)
    assert result.success
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert listed == ["exports/region.parquet"], listed
    assert pq.read_table(io.BytesIO(s3_bytes(s3, "exports/region.parquet"))).num_rows == 5
