"""An alert for every failed run: which exports failed, with what error, and where to look.

The run failure sensor writes the alert to its tick log (shown on the sensor's page in the UI)
and to the daemon's log, where a log shipper or an on-call tool can pick it up. The text holds no
secret and no SQL: error messages are cut to their first line, which names the export, the
destination and the error class (see ExportFailed), and pass through the connector's SecretDetector.
"""

from __future__ import annotations

from dagster import DefaultSensorStatus, RunFailureSensorContext, SensorDefinition, run_failure_sensor

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
