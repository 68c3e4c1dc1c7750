"""The progress line an export logs while it streams, and how the CLI reads it back."""

from __future__ import annotations

import pytest

from data_migration.exports.progress import Progress, ProgressReporter


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)


@pytest.mark.parametrize(
    "progress",
    [Progress(0, 0, 0.0), Progress(3_145_728, 212_400_000, 6.1), Progress(10**12, 10**15, 86_400.5)],
)
def test_text_parses_back(progress: Progress):
    assert Progress.parse(progress.text()) == progress


def test_text_reads_as_a_person_expects():
    assert Progress(3_145_728, 212_400_000, 6.1).text() == (
        "Progress: 3,145,728 rows, 212.4 MB in 6.1 s (515,693 rows/s, 34.8 MB/s)"
    )
    assert Progress(10, 100, 0.0).text() == "Progress: 10 rows, 0.0 MB in 0.0 s"  # no rate yet


@pytest.mark.parametrize(
    "message", ["Export complete: 15000 rows", "Progress report", "Uploading to s3://b/Progress: 1 rows", ""]
)
def test_other_lines_are_not_progress(message: str):
    assert Progress.parse(message) is None


def test_reporter_logs_at_most_once_per_interval():
    now = [100.0]
    log = _Log()
    report = ProgressReporter(log, interval=5.0, clock=lambda: now[0])
    for step in range(1, 121):  # a batch every 0.25 s for 30 s
        now[0] = 100.0 + step * 0.25
        report(step * 1000, step * 10_000)
    parsed = [Progress.parse(line) for line in log.lines]
    assert [p.seconds for p in parsed if p] == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert [p.rows for p in parsed if p] == [20_000, 40_000, 60_000, 80_000, 100_000, 120_000]


def test_reporter_with_interval_zero_logs_every_batch():
    log = _Log()
    report = ProgressReporter(log, interval=0.0)
    for rows in (1, 2, 3):
        report(rows, rows)
    assert [Progress.parse(line).rows for line in log.lines] == [1, 2, 3]  # type: ignore[union-attr]
