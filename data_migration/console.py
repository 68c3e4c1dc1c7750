"""What a person sees while `data-migration run` runs, and the summary after it.

`RunConsole` listens to the run's events as Dagster stores them (in the same process) and prints:
    Source: embedded Snowflake emulator (fakesnow) with TPC-H SF0.01 in SNOWFLAKE_SAMPLE_DATA.TPCH_SF1
    ▸ ORDERS
      ORDERS  3,145,728 rows, 212.4 MB in 6.1 s (515,694 rows/s, 34.8 MB/s)
    ✓ ORDERS  15,000 rows  0.6 MB  0.3 s
A terminal gets the progress line redrawn in place; a pipe or a CI log gets each progress line as
a plain line (as often as the export logs one, every DATA_MIGRATION_PROGRESS_SECONDS). Then
`print_summary` prints one line per export (rows and URI, or why it failed) and the total.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from dagster import AssetKey, DagsterEventType, EventLogEntry

from data_migration.errors import masked
from data_migration.exports.progress import PREFIX, Progress

_ANNOUNCED = ("Source: ", "Destination: ")
_PARTITIONS_LISTED = 12  # a backfill's summary lists its last partitions, one line each
_CLEAR_LINE = "\r\x1b[K"


@dataclass
class _Export:
    key: AssetKey
    name: str
    started: float | None = None
    rows: int | None = None
    size: int | None = None
    new_rows: int | None = None  # an incremental export: the rows this run added
    unchanged_since: str | None = None  # skip_unchanged found no table changed since then


@dataclass
class RunConsole:
    """Prints each export's start, progress and end from the run's events (see module docstring)."""

    keys: Sequence[AssetKey]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    live: bool = False  # redraw progress in place (a terminal) rather than print it line by line
    checks_passed: int = 0
    checks_failed: int = 0
    _exports: dict[str, _Export] = field(default_factory=dict)
    _announced: set[str] = field(default_factory=set)
    _live_line: bool = False
    _broken: bool = False

    def __post_init__(self) -> None:
        width = max((len(key.to_user_string()) for key in self.keys), default=0)
        self._exports = {
            key.to_python_identifier(): _Export(key, key.to_user_string().ljust(width)) for key in self.keys
        }

    def on_event(self, entry: EventLogEntry) -> None:
        """The instance's event listener. Never raises: a display problem must not fail the run."""
        if self._broken:
            return
        try:
            self._handle(entry)
            self.out.flush()
        except Exception as error:  # noqa: BLE001
            self._broken = True
            print(f"(progress display stopped: {type(error).__name__}: {error})", file=sys.stderr)

    def _handle(self, entry: EventLogEntry) -> None:
        event = entry.dagster_event
        export = self._exports.get(entry.step_key or "")
        if event is None:
            self._on_message(entry.user_message, export)
            return
        kind = event.event_type
        if kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            passed = event.event_specific_data.passed  # type: ignore[union-attr]
            self.checks_passed += int(passed)
            self.checks_failed += int(not passed)
        if export is None:
            return
        if kind == DagsterEventType.STEP_START:
            export.started, export.rows, export.size, export.new_rows = entry.timestamp, None, None, None
            export.unchanged_since = None
            self._print(f"▸ {export.name.rstrip()}")
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            # One per partition when the step exported several: they add up.
            metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
            export.rows = _add(export.rows, _value(metadata.get("dagster/row_count")))
            if _value(metadata.get("unchanged")):
                export.unchanged_since = _value(metadata.get("unchanged_since"))
            elif "increment_rows" in metadata:  # what this run added, not what the export holds
                export.new_rows = _value(metadata["increment_rows"])
                export.size = _value(metadata.get("increment_size_bytes"))
            elif "rows_loaded" in metadata:  # a load: the rows it loaded, not what the table holds
                export.rows = _value(metadata["rows_loaded"])
            else:
                export.size = _add(export.size, _value(metadata.get("size_bytes")))
        elif kind == DagsterEventType.STEP_SUCCESS:
            rows = f"{export.rows:,} rows" if export.rows is not None else ""
            if export.new_rows is not None:
                rows = f"+{export.new_rows:,} new rows"
            size = human_size(export.size) if export.size is not None else ""
            if export.unchanged_since is not None:
                rows, size = "unchanged", f"(no table changed since {export.unchanged_since}; nothing written)"
            self._print(f"✓ {export.name}  {rows:>14}  {size:>9}  {self._elapsed(export, entry)}")
        elif kind == DagsterEventType.STEP_UP_FOR_RETRY:
            self._print(f"↻ {export.name}  {failure_message(event)} (retrying)")
        elif kind == DagsterEventType.STEP_FAILURE:
            self._print(f"✗ {export.name}  {failure_message(event)}  {self._elapsed(export, entry)}")

    def _on_message(self, message: str, export: _Export | None) -> None:
        if export is None:
            if message.startswith(_ANNOUNCED) and message not in self._announced:
                self._announced.add(message)
                self._print(message)
            return
        progress = Progress.parse(message)
        if progress is None:
            return
        line = f"  {export.name.rstrip()}  {progress.text().removeprefix(PREFIX)}"
        if self.live:
            self.out.write(_CLEAR_LINE + line)
            self._live_line = True
        else:
            self._print(line)

    def _print(self, line: str) -> None:
        if self._live_line:
            self.out.write(_CLEAR_LINE)
            self._live_line = False
        print(line, file=self.out)

    @staticmethod
    def _elapsed(export: _Export, entry: EventLogEntry) -> str:
        return "" if export.started is None else f"{entry.timestamp - export.started:.1f} s"


def human_size(size: int) -> str:
    """Decimal units, as S3's console shows them: 21.7 kB, 611.1 kB, 1.2 MB, 3.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _value(entry: Any) -> Any:
    return None if entry is None else entry.value


def _add(total: int | None, value: int | None) -> int | None:
    return value if total is None else total + (value or 0)


def print_summary(result: Any, keys: Sequence[AssetKey], console: RunConsole, out: TextIO) -> int:
    """One line per export, then the total; returns how many exports succeeded."""
    outcomes: dict[AssetKey, str] = {}
    partitions: dict[AssetKey, list[tuple[str, int, str]]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        metadata = materialization.metadata
        rows, uri = metadata["dagster/row_count"].value, _value(metadata.get("dagster/uri"))
        if "rows_loaded" in metadata:  # a load: the rows it loaded, and what the table holds now
            skipped = _value(metadata.get("files_skipped")) or 0
            already = f", {skipped} file(s) loaded before" if skipped else ""
            outcomes[event.asset_key] = (
                f"✓ {{name}}  {rows:>9,} rows  {_value(metadata['rows_loaded']):,} loaded into "
                f"{_value(metadata['target'])} ({_value(metadata['mode'])}{already})"
            )
        elif _value(metadata.get("unchanged")):  # skip_unchanged: kept as it was
            since = _value(metadata.get("unchanged_since"))
            outcomes[event.asset_key] = f"✓ {{name}}  {rows:>9,} rows  unchanged since {since}  {uri}"
        elif "increment_rows" in metadata:  # an incremental export: what this run added, and the total
            new = metadata["increment_rows"].value
            # A new generation (a first run, a full refresh): say why.
            fresh = f"  ({_value(metadata.get('increment_reason'))})" if _value(metadata.get("full_refresh")) else ""
            outcomes[event.asset_key] = f"✓ {{name}}  {rows:>9,} rows  +{new:,} new  {uri}{fresh}"
        elif materialization.partition is None:
            outcomes[event.asset_key] = f"✓ {{name}}  {rows:>9,} rows  {uri}"
        else:
            partitions.setdefault(event.asset_key, []).append((materialization.partition, rows, uri))
    details: dict[AssetKey, list[str]] = {}
    for key, done_partitions in partitions.items():
        total = sum(rows for _, rows, _ in done_partitions)
        first, last = done_partitions[0][0], done_partitions[-1][0]
        span = (
            f"partition {first}" if len(done_partitions) == 1 else f"{len(done_partitions)} partitions {first} … {last}"
        )
        outcomes[key] = f"✓ {{name}}  {total:>9,} rows  {span}"
        shown = done_partitions if len(done_partitions) <= _PARTITIONS_LISTED else done_partitions[-_PARTITIONS_LISTED:]
        details[key] = [f"    {partition}  {rows:>9,} rows  {uri}" for partition, rows, uri in shown]
        if len(shown) < len(done_partitions):
            details[key].insert(
                0, f"    … {len(done_partitions) - len(shown)} earlier partition(s); the last {len(shown)}:"
            )
    failed_checks: dict[AssetKey, list[str]] = {}
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            severity = "warning" if evaluation.severity.value == "WARN" else "check failed"
            failed_checks.setdefault(evaluation.asset_key, []).append(
                f"{severity}: {evaluation.check_name}: {evaluation.description}"
            )
    failures = {e.step_key: e for e in result.get_step_failure_events()}
    width = max(len(k.to_user_string()) for k in keys)
    checks = console.checks_passed + console.checks_failed
    if checks:
        print(f"Checks: {console.checks_passed} of {checks} passed.", file=out)
    print(file=out)
    done = 0
    for key in keys:
        name = key.to_user_string().ljust(width)
        problems = failed_checks.get(key, [])
        blocking = any(p.startswith("check failed") for p in problems)
        if key in outcomes:
            line = outcomes[key].format(name=name)
            print(("✗" + line[1:]) if blocking else line, file=out)
            for detail in details.get(key, []):
                print(detail, file=out)
            for problem in problems:
                print(f"    {problem}", file=out)
            done += not blocking
        elif key.to_python_identifier() in failures:
            print(f"✗ {name}  {failure_message(failures[key.to_python_identifier()])}", file=out)
        else:
            print(f"✗ {name}  not run (an earlier failure stopped it)", file=out)
    return done


def failure_message(event: Any) -> str:
    """The most specific message in the error chain: ours (ExportFailed) when there is one."""
    error = event.event_specific_data.error
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    if not chain:
        return "failed"
    # Dagster names classes with their module (data_migration.errors.ExportFailed) and starts the
    # message with that name.
    ours = ("ExportFailed", "LoadFailed")
    chosen = next((e for e in chain if _class_name(e) in ours), chain[-1])
    text = re.sub(rf"^[\w.]*\b{re.escape(_class_name(chosen))}: ", "", chosen.message.strip())
    # Snowflake's messages put the cause on the line after "SQL compilation error:".
    text = re.sub(r":\s*\n\s*", ": ", text)
    first_line = masked(text.splitlines()[0]) if text else _class_name(chosen)
    return first_line if _class_name(chosen) in ours else f"{_class_name(chosen)}: {first_line}"


def _class_name(error: Any) -> str:
    return error.cls_name.rsplit(".", 1)[-1]
