"""An alert for every failed run: which exports failed, with what error, and where to look.

The run failure sensor writes the alert to its tick log (shown on the sensor's page in the UI)
and to the daemon's log, where a log shipper or an on-call tool can pick it up. The text holds no
secret and no SQL: error messages are cut to their first line, which names the export, the
destination and the error class (see ExportFailed), and pass through the connector's SecretDetector.

Who is told, by settings (`alert_senders`):
- always: the `export_failure_alert` sensor's log line;
- DATA_MIGRATION_ALERT_EMAIL_TO (and an SMTP server: DATA_MIGRATION_SMTP_HOST, _PORT, _TYPE,
  _USER, _PASSWORD, DATA_MIGRATION_ALERT_EMAIL_FROM): Dagster's own
  `make_email_on_run_failure_sensor` sends the same text by email (`export_failure_email`);
- DATA_MIGRATION_ALERT_WEBHOOK_URL: the text is posted to that URL as `{"text": …}` with
  slack_sdk's `WebhookClient` (`export_failure_webhook`): a Slack incoming webhook, or anything
  that takes Slack's payload (Mattermost, Google Chat, Microsoft Teams' workflows). The URL holds
  its own secret, so it is never logged; a refused post fails the tick naming the status only.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    make_email_on_run_failure_sensor,
    run_failure_sensor,
)

from data_migration.errors import masked

_MESSAGE_CHARS = 300


def failure_alert(context: RunFailureSensorContext, ui_url: str) -> str:
    run = context.dagster_run
    lines = [f"Run {run.run_id} of job {run.job_name} failed: {ui_url.rstrip('/')}/runs/{run.run_id}"]
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        kind = error.cls_name if error else "unknown error"
        first_line = (error.message.strip().splitlines() or [""])[0] if error else ""
        # Dagster prefixes the qualified class name ("data_migration.errors.ExportFailed: ").
        first_line = first_line.split(f"{kind}: ", 1)[1] if f"{kind}: " in first_line else first_line
        first_line = masked(first_line)  # an error that is not ours (ExportFailed masks its own)
        if len(first_line) > _MESSAGE_CHARS:
            first_line = first_line[: _MESSAGE_CHARS - 1] + "…"
        lines.append(f"- {event.step_key}: {kind}: {first_line}")
    if len(lines) == 1:
        failure = context.failure_event.message if context.failure_event else ""
        lines.append(f"- no step failed; the run did: {masked(failure or 'no reason given')[:_MESSAGE_CHARS]}")
    return "\n".join(lines)


def build_failure_sensor(ui_url: str) -> SensorDefinition:
    @run_failure_sensor(
        name="export_failure_alert",
        description="Writes an alert naming each failed export, its error class and the run's page.",
        default_status=DefaultSensorStatus.RUNNING,
    )
    def export_failure_alert(context: RunFailureSensorContext) -> None:
        context.log.error(failure_alert(context, ui_url))

    return export_failure_alert


class AlertSettingsError(ValueError):
    """An alert setting that is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class EmailAlert:
    to: tuple[str, ...]
    sender: str
    host: str
    port: int | None
    smtp_type: str  # "SSL" or "STARTTLS", as Dagster's sender takes it
    user: str | None
    password: str


SMTP_TYPES = ("SSL", "STARTTLS")


def email_alert(env: Mapping[str, str]) -> EmailAlert | None:
    """The email alert the settings ask for, or None when DATA_MIGRATION_ALERT_EMAIL_TO is unset."""
    to = tuple(
        address.strip() for address in (env.get("DATA_MIGRATION_ALERT_EMAIL_TO") or "").split(",") if address.strip()
    )
    if not to:
        return None
    missing = [
        name
        for name in ("DATA_MIGRATION_ALERT_EMAIL_FROM", "DATA_MIGRATION_SMTP_HOST", "DATA_MIGRATION_SMTP_PASSWORD")
        if not env.get(name)
    ]
    if missing:
        raise AlertSettingsError(
            f"DATA_MIGRATION_ALERT_EMAIL_TO is set, but {', '.join(missing)} not: an email alert needs the sender, "
            "the SMTP server and its password (Dagster's sender always signs in)"
        )
    smtp_type = (env.get("DATA_MIGRATION_SMTP_TYPE") or "SSL").upper()
    if smtp_type not in SMTP_TYPES:
        raise AlertSettingsError(
            f"DATA_MIGRATION_SMTP_TYPE={env['DATA_MIGRATION_SMTP_TYPE']!r} must be SSL or STARTTLS"
        )
    port = env.get("DATA_MIGRATION_SMTP_PORT")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise AlertSettingsError(f"DATA_MIGRATION_SMTP_PORT={port!r} must be a port number")
    return EmailAlert(
        to=to,
        sender=env["DATA_MIGRATION_ALERT_EMAIL_FROM"],
        host=env["DATA_MIGRATION_SMTP_HOST"],
        port=int(port) if port else None,
        smtp_type=smtp_type,
        user=env.get("DATA_MIGRATION_SMTP_USER") or None,
        password=env["DATA_MIGRATION_SMTP_PASSWORD"],
    )


def webhook_url(env: Mapping[str, str]) -> str | None:
    url = env.get("DATA_MIGRATION_ALERT_WEBHOOK_URL") or None
    if url is not None and not url.startswith(("https://", "http://")):
        raise AlertSettingsError("DATA_MIGRATION_ALERT_WEBHOOK_URL must be an http(s) URL")  # never the URL itself
    return url


def alert_senders(ui_url: str, env: Mapping[str, str]) -> list[SensorDefinition]:
    """The log line's sensor, and the email and webhook senders the settings ask for."""
    sensors = [build_failure_sensor(ui_url)]
    email = email_alert(env)
    if email is not None:
        sensors.append(
            make_email_on_run_failure_sensor(
                email_from=email.sender,
                email_password=email.password,
                email_to=list(email.to),
                email_body_fn=lambda context: "<br>".join(
                    html.escape(line) for line in failure_alert(context, ui_url).splitlines()
                ),
                email_subject_fn=lambda context: f"data-migration: run of {context.dagster_run.job_name} failed",
                smtp_host=email.host,
                smtp_type=email.smtp_type,
                smtp_port=email.port,
                smtp_user=email.user,
                name="export_failure_email",
                webserver_base_url=ui_url,
                default_status=DefaultSensorStatus.RUNNING,
            )
        )
    url = webhook_url(env)
    if url is not None:
        sensors.append(build_webhook_sensor(ui_url, url))
    return sensors


def build_webhook_sensor(ui_url: str, url: str) -> SensorDefinition:
    @run_failure_sensor(
        name="export_failure_webhook",
        description="Posts the alert to DATA_MIGRATION_ALERT_WEBHOOK_URL (Slack's incoming-webhook payload).",
        default_status=DefaultSensorStatus.RUNNING,
    )
    def export_failure_webhook(context: RunFailureSensorContext) -> None:
        from slack_sdk.webhook import WebhookClient

        response = WebhookClient(url, timeout=30).send(text=failure_alert(context, ui_url))
        if response.status_code >= 300:
            raise RuntimeError(
                f"the alert webhook (DATA_MIGRATION_ALERT_WEBHOOK_URL) answered {response.status_code}: "
                f"{masked(str(response.body))[:_MESSAGE_CHARS]}"
            )

    return export_failure_webhook
