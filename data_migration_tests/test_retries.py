"""Transient failures are retried with backoff; permanent ones fail at once.

Faults are injected for real: a missing table, an S3 endpoint with nothing listening, and a
Snowflake that answers 503 to one session until the connector gives up.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import snowflake.connector.errors as sf
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from data_migration.definitions import build_definitions
from data_migration.errors import is_transient
from data_migration.files.storage import StorageError
from data_migration.resources import SettingsError, retry_policy_from_env
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration.snowflake.queries import RowCountMismatch
from data_migration_tests.support import (
    AWS_SECRET_CANARY,
    BUCKET,
    SNOWFLAKE_PASSWORD_CANARY,
    WRONG_PASSWORD_USER,
    Snowflake,
    write_config,
)


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


def caused_by(cause: BaseException) -> StorageError:
    try:
        raise StorageError("s3://b/k: upload failed") from cause
    except StorageError as error:
        return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (sf.ServiceUnavailableError(msg="503"), True),
        (sf.GatewayTimeoutError(msg="504"), True),
        (sf.TooManyRequests(msg="429"), True),
        (sf.OperationalError(msg="Failed to execute request", errno=250003), True),
        (sf.ProgrammingError(msg="SQL compilation error", errno=2003), False),
        (sf.DatabaseError(msg="Incorrect username or password was specified.", errno=390100), False),
        (sf.ForbiddenError(msg="403"), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), True),
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("NoSuchBucket", 404), False),
        (client_error("AccessDenied", 403), False),
        (client_error("InvalidAccessKeyId", 403), False),
        (caused_by(client_error("SlowDown", 503)), True),  # through our wrapping
        (caused_by(client_error("NoSuchBucket", 404)), False),
        (RowCountMismatch("short"), False),
        (TypeError("does not fit"), False),
        (OSError("disk full"), False),
    ],
)
def test_classification(error: BaseException, transient: bool):
    assert is_transient(error) is transient


def test_retry_policy_settings():
    policy = retry_policy_from_env({})
    assert (policy.max_retries, policy.delay, policy.backoff, policy.jitter) == (
        3,
        10,
        dg.Backoff.EXPONENTIAL,
        dg.Jitter.PLUS_MINUS,
    )
    assert retry_policy_from_env({"DATA_MIGRATION_MAX_RETRIES": "0"}) is None
    with pytest.raises(SettingsError, match="DATA_MIGRATION_MAX_RETRIES='-1'"):
        retry_policy_from_env({"DATA_MIGRATION_MAX_RETRIES": "-1"})


def run(config: Path, env: dict) -> dg.ExecuteInProcessResult:
    return (
        build_definitions(config, env)
        .resolve_job_def(ALL_EXPORTS_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )


def retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.get_step_failure_events())


@pytest.fixture
def fast_retries(production_env: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    env = {**production_env, "DATA_MIGRATION_MAX_RETRIES": "2", "DATA_MIGRATION_RETRY_DELAY": "0.05"}
    for name in ("DATA_MIGRATION_MAX_RETRIES", "DATA_MIGRATION_RETRY_DELAY"):
        monkeypatch.setenv(name, env[name])
    return env


def test_permanent_failure_is_not_retried(fast_retries: dict, tmp_path: Path):
    result = run(write_config(tmp_path / "e.yaml", [{"table": "NO_SUCH_TABLE", "s3_path": "x.parquet"}]), fast_retries)
    assert not result.success
    assert retries(result) == 0
    text = failure_text(result)
    assert "export NO_SUCH_TABLE failed in Snowflake (ProgrammingError)" in text
    assert "not retried: another attempt would fail the same way" in text


def test_missing_bucket_is_not_retried(fast_retries: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("S3_BUCKET_NAME", "no-such-bucket")
    env = {**fast_retries, "S3_BUCKET_NAME": "no-such-bucket"}
    result = run(write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "r.parquet"}]), env)
    assert retries(result) == 0
    assert "bucket 'no-such-bucket' does not exist" in failure_text(result)


def test_unreachable_s3_is_retried_then_fails(
    fast_retries: dict, fake_snowflake: Snowflake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with contextlib.closing(socket.socket()) as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {**fast_retries, "AWS_ENDPOINT_URL": closed, "AWS_MAX_ATTEMPTS": "1"}
    for name in ("AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS"):
        monkeypatch.setenv(name, env[name])
    before = len(fake_snowflake.recorder.queries)
    result = run(write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "exports/region.parquet"}]), env)
    assert not result.success
    assert retries(result) == 2  # DATA_MIGRATION_MAX_RETRIES
    exports = [q for q in fake_snowflake.recorder.queries[before:] if q == 'SELECT * FROM "REGION"']
    assert len(exports) == 3  # the query runs once per Dagster attempt, not once per S3 retry
    text = failure_text(result)
    assert f"export REGION to s3://{BUCKET}/exports/region.parquet failed" in text
    assert "EndpointConnectionError" in text
    assert SNOWFLAKE_PASSWORD_CANARY not in text and AWS_SECRET_CANARY not in text


def test_snowflake_503_then_recovery(
    fast_retries: dict, fake_snowflake: Snowflake, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The first session gets 503 until the connector gives up; Dagster retries on a new session."""
    # The connector retries a query's 503s for as long as the query timeout allows (it overrides
    # the network timeout for the query), so a short query timeout makes it give up quickly.
    monkeypatch.setenv("SNOWFLAKE_QUERY_TIMEOUT", "3")
    env = {**fast_retries, "SNOWFLAKE_QUERY_TIMEOUT": "3"}
    marker = "/* flaky */"
    query = f"select {marker} * from region"  # inside: a comment after the last token is not sent
    monkeypatch.setattr(fake_snowflake.recorder, "fail_first_session_for", marker)
    monkeypatch.setattr(fake_snowflake.recorder, "failing_session", None)
    monkeypatch.setattr(fake_snowflake.recorder, "failures_sent", 0)
    result = run(
        write_config(
            tmp_path / "e.yaml",
            [{"table": "REGION", "s3_path": "exports/region.csv", "file_type": "csv", "query": query}],
        ),
        env,
    )
    assert result.success, failure_text(result)
    assert retries(result) == 1
    assert fake_snowflake.recorder.failures_sent >= 1
    body = s3.get_object(Bucket=BUCKET, Key="exports/region.csv")["Body"].read().decode()
    assert body.count("\n") == 6  # header and the five regions


def test_wrong_password_fails_at_once_without_leaking_it(
    fast_retries: dict,
    fake_snowflake: Snowflake,
    s3: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
):
    monkeypatch.setenv("SNOWFLAKE_USER", WRONG_PASSWORD_USER)
    env = {**fast_retries, "SNOWFLAKE_USER": WRONG_PASSWORD_USER}
    logins = fake_snowflake.recorder.logins
    instance = dg.DagsterInstance.ephemeral()
    result = (
        build_definitions(write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "r.parquet"}]), env)
        .resolve_job_def(ALL_EXPORTS_JOB)
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert not result.success
    assert retries(result) == 0
    assert fake_snowflake.recorder.logins - logins == 1  # one attempt, no retry storm
    text = failure_text(result)
    assert "390100" in text and "Incorrect username or password was specified." in text
    assert "not retried" in text
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    surfaces = [text, *(str(entry) for entry in instance.all_logs(result.run_id)), *capfd.readouterr()]
    assert not any(SNOWFLAKE_PASSWORD_CANARY in surface for surface in surfaces)


def test_failure_alert_names_the_export_error_and_run_page(fast_retries: dict, tmp_path: Path):
    """The run failure sensor's alert, evaluated on a real failed run (one export of two fails)."""
    env = {**fast_retries, "DATA_MIGRATION_UI_URL": "https://dagster.example.com/"}
    config = write_config(
        tmp_path / "e.yaml",
        [
            {
                "table": "NO_SUCH_TABLE",
                "s3_path": "x.parquet",
                "query": "SELECT * FROM NO_SUCH_TABLE WHERE C = 'literal-in-sql'",
            },
            {"table": "REGION", "s3_path": "r.parquet"},
        ],
    )
    defs = build_definitions(config, env)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(ALL_EXPORTS_JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    sensor = defs.resolve_sensor_def("export_failure_alert")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()

    from data_migration.alerts import failure_alert

    alert = failure_alert(context, "https://dagster.example.com/")
    lines = alert.splitlines()
    assert (
        lines[0] == f"Run {result.run_id} of job all_exports failed: https://dagster.example.com/runs/{result.run_id}"
    )
    assert len(lines) == 2 and lines[1].startswith(
        "- NO_SUCH_TABLE: ExportFailed: export NO_SUCH_TABLE failed in Snowflake (ProgrammingError)"
    )
    assert "REGION" not in alert  # it succeeded
    for secret in (SNOWFLAKE_PASSWORD_CANARY, AWS_SECRET_CANARY, "literal-in-sql"):
        assert secret not in alert
    sensor(context)  # the sensor itself runs on it without error


# The connector names a result chunk's presigned URL when its download fails; its signature and
# token must not reach the event log, the console or the alert.
CHUNK_URL = (
    "https://sfc-ds1-customer-stage.s3.us-west-2.amazonaws.com/abcd-s-0001/results/01b2-0000/main/data_0_0_1"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261207T120000Z&X-Amz-Expires=21600"
    "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr0CANARYTOKEN0123456789abcdef"
    "&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
)


def test_a_presigned_url_in_an_error_is_masked_in_events_console_and_alert(
    fast_retries: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from snowflake.connector.vendored.requests.exceptions import ChunkedEncodingError

    from data_migration.alerts import failure_alert
    from data_migration.console import failure_message
    from data_migration.snowflake.queries import ExportStream

    def broken(self: ExportStream) -> Any:
        raise ChunkedEncodingError(f"Connection broken: IncompleteRead(1024 bytes read) while fetching {CHUNK_URL}")
        yield

    monkeypatch.setattr(ExportStream, "batches", broken)
    env = {**fast_retries, "DATA_MIGRATION_MAX_RETRIES": "0"}
    defs = build_definitions(write_config(tmp_path / "e.yaml", [{"table": "REGION", "s3_path": "r.parquet"}]), env)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(ALL_EXPORTS_JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (step_failure,) = result.get_step_failure_events()
    logged = failure_text(result)  # the message and every cause, as the event log holds them
    console = failure_message(step_failure)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="export_failure_alert", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()  # fmt: skip
    alert = failure_alert(context, "https://dagster.example.com/")
    assert "ChunkedEncodingError" in logged and "sfc-ds1-customer-stage" in logged  # the error is still told
    for text in (logged, console, alert):
        assert "CANARYTOKEN" not in text and "0f1e2d3c4b5a6978" not in text, text
    assert "****" in logged
