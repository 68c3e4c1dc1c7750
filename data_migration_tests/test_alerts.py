"""The run failure alert reaches people: by email through Dagster's own SMTP sender
(make_email_on_run_failure_sensor), against a local SMTP server (aiosmtpd) that requires
STARTTLS and a login, and by webhook (slack_sdk's WebhookClient, Slack's payload), against a local
HTTP server standing in for Slack. Without their settings, only the log line's sensor exists.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from data_migration.alerts import failure_alert
from data_migration.definitions import build_definitions
from data_migration.resources import SettingsError
from data_migration.schedules import ALL_EXPORTS_JOB
from data_migration_tests.support import SNOWFLAKE_PASSWORD_CANARY, free_port, write_config

UI = "https://dagster.example.com/"
WEBHOOK_SECRET = "B0SECRETWEBHOOKTOKEN"  # the part of a Slack webhook URL that is its credential
SMTP_PASSWORD = "smtp-password-canary"


def failed_run(env: dict[str, str], tmp_path: Path) -> tuple[dg.Definitions, Any]:
    """A real failed run (one export of two fails), and the failure sensor's context for it."""
    config = write_config(
        tmp_path / "e.yaml",
        [
            {"table": "NO_SUCH_TABLE", "s3_path": "x.parquet", "query": "SELECT * FROM NO_SUCH_TABLE"},
            {"table": "REGION", "s3_path": "r.parquet"},
        ],
    )
    defs = build_definitions(config, {**env, "DATA_MIGRATION_UI_URL": UI, "DATA_MIGRATION_MAX_RETRIES": "0"})
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(ALL_EXPORTS_JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    return defs, (instance, result, failure)


def sensor_context(defs: dg.Definitions, name: str, run: Any) -> Any:
    instance, result, failure = run
    return dg.build_run_status_sensor_context(
        sensor_name=name, dagster_instance=instance, dagster_run=result.dagster_run, dagster_event=failure
    ).for_run_failure()


def test_without_settings_only_the_log_line_alerts(production_env: dict):
    defs = build_definitions(None, production_env)
    names = {sensor.name for sensor in defs.sensors or []}
    assert "export_failure_alert" in names
    assert not names & {"export_failure_email", "export_failure_webhook"}


# The webhook -------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[dict[str, Any]]:
    """A local HTTP server standing in for Slack's incoming webhooks: it keeps each POST and
    answers with `state["status"]` (Slack answers 200 "ok")."""
    state: dict[str, Any] = {"posts": [], "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["posts"].append((self.path, self.headers.get("Content-Type"), json.loads(body)))
            answer = b"ok" if state["status"] == 200 else b"invalid_token"
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/services/T000/{WEBHOOK_SECRET}"
    try:
        yield state
    finally:
        server.shutdown()


def test_a_failed_run_is_posted_to_the_webhook_as_slack_takes_it(
    production_env: dict, tmp_path: Path, slack: dict, capfd: pytest.CaptureFixture
):
    env = {**production_env, "DATA_MIGRATION_ALERT_WEBHOOK_URL": slack["url"]}
    defs, run = failed_run(env, tmp_path)
    context = sensor_context(defs, "export_failure_webhook", run)
    defs.resolve_sensor_def("export_failure_webhook")(context)
    ((path, content_type, payload),) = slack["posts"]
    assert path == f"/services/T000/{WEBHOOK_SECRET}" and content_type.startswith("application/json")
    assert payload == {"text": failure_alert(context, UI)}
    assert payload["text"].splitlines()[1].startswith("- NO_SUCH_TABLE: ExportFailed: export NO_SUCH_TABLE failed")
    # Refused: the tick fails naming the status, never the URL (its path is its credential).
    slack["status"] = 403
    with pytest.raises(RuntimeError, match="answered 403: invalid_token") as refused:
        defs.resolve_sensor_def("export_failure_webhook")(context)
    captured = capfd.readouterr()
    for text in (str(refused.value), captured.out, captured.err, *map(str, run[0].all_logs(run[1].run_id))):
        assert WEBHOOK_SECRET not in text and SNOWFLAKE_PASSWORD_CANARY not in text


def test_a_webhook_url_that_is_not_http_is_a_settings_error(production_env: dict):
    with pytest.raises(SettingsError, match="DATA_MIGRATION_ALERT_WEBHOOK_URL must be an http") as error:
        build_definitions(None, {**production_env, "DATA_MIGRATION_ALERT_WEBHOOK_URL": f"slack:{WEBHOOK_SECRET}"})
    assert WEBHOOK_SECRET not in str(error.value)


# Email ---------------------------------------------------------------------------------------


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """aiosmtpd on 127.0.0.1 with STARTTLS (a self-signed certificate this process trusts through
    SSL_CERT_FILE, as ssl.create_default_context reads it) and AUTH required after it."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    state: dict[str, Any] = {"messages": [], "logins": []}

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            state["messages"].append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == SMTP_PASSWORD.encode()
        state["logins"].append((mechanism, getattr(data, "login", None), ok))
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
        authenticator=authenticator, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    state["port"] = port
    try:
        yield state
    finally:
        controller.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_a_failed_run_is_emailed_through_dagsters_smtp_sender(
    production_env: dict, tmp_path: Path, smtp: dict, capfd: pytest.CaptureFixture
):
    env = {
        **production_env,
        "DATA_MIGRATION_ALERT_EMAIL_TO": "oncall@example.com, data@example.com",
        "DATA_MIGRATION_ALERT_EMAIL_FROM": "dagster@example.com",
        "DATA_MIGRATION_SMTP_HOST": "127.0.0.1",
        "DATA_MIGRATION_SMTP_PORT": str(smtp["port"]),
        "DATA_MIGRATION_SMTP_TYPE": "starttls",
        "DATA_MIGRATION_SMTP_USER": "alerts",
        "DATA_MIGRATION_SMTP_PASSWORD": SMTP_PASSWORD,
    }
    defs, run = failed_run(env, tmp_path)
    context = sensor_context(defs, "export_failure_email", run)
    defs.resolve_sensor_def("export_failure_email")(context)
    assert [login[2] for login in smtp["logins"]] == [True]
    ((sender, recipients, content),) = smtp["messages"]
    assert sender == "dagster@example.com" and recipients == ["oncall@example.com", "data@example.com"]
    email = message_from_bytes(content)
    assert email["Subject"] == "data-migration: run of all_exports failed"
    body = email.get_payload()
    alert = failure_alert(context, UI).splitlines()
    assert alert[0] in body and alert[1] in body.replace("&#x27;", "'")
    captured = capfd.readouterr()
    for text in (captured.out, captured.err, *map(str, run[0].all_logs(run[1].run_id))):
        assert SMTP_PASSWORD not in text


@pytest.mark.parametrize(
    ("more", "expected"),
    [
        ({}, "but DATA_MIGRATION_ALERT_EMAIL_FROM, DATA_MIGRATION_SMTP_HOST, DATA_MIGRATION_SMTP_PASSWORD not"),
        ({"DATA_MIGRATION_ALERT_EMAIL_FROM": "a@b.c", "DATA_MIGRATION_SMTP_HOST": "h",
          "DATA_MIGRATION_SMTP_PASSWORD": "p", "DATA_MIGRATION_SMTP_TYPE": "tls"}, "must be SSL or STARTTLS"),
        ({"DATA_MIGRATION_ALERT_EMAIL_FROM": "a@b.c", "DATA_MIGRATION_SMTP_HOST": "h",
          "DATA_MIGRATION_SMTP_PASSWORD": "p", "DATA_MIGRATION_SMTP_PORT": "smtp"}, "must be a port number"),
    ],
)  # fmt: skip
def test_an_incomplete_email_alert_is_a_settings_error(production_env: dict, more: dict, expected: str):
    env = {**production_env, "DATA_MIGRATION_ALERT_EMAIL_TO": "oncall@example.com", **more}
    with pytest.raises(SettingsError, match=expected):
        build_definitions(None, env)
