"""Progress of an export while it streams: a line in the run's log every few seconds.

The IO manager hands a `ProgressReporter` to the writer; every few seconds it logs rows and
bytes written so far, with the rate, e.g.
    Progress: 3,145,728 rows, 212.4 MB in 6.1 s (515,694 rows/s, 34.8 MB/s)
The line is the same in the Dagster UI's run log and in `data-migration run`, which reads it back
from the run's events with `Progress.parse` (the format and the parser live here together).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

PREFIX = "Progress: "
DEFAULT_INTERVAL_SECONDS = 5.0
_PATTERN = re.compile(rf"^{PREFIX}(?P<rows>[\d,]+) rows, (?P<mb>[\d.]+) MB in (?P<seconds>[\d.]+) s\b")


class _Log(Protocol):
    def info(self, msg: str) -> None: ...


@dataclass(frozen=True)
class Progress:
    rows: int
    bytes: int
    seconds: float

    @property
    def megabytes(self) -> float:
        return self.bytes / 1_000_000

    def rate(self) -> str:
        if self.seconds < 0.05:  # too short to say
            return ""
        return f"{self.rows / self.seconds:,.0f} rows/s, {self.megabytes / self.seconds:.1f} MB/s"

    def text(self) -> str:
        rate = self.rate()
        return f"{PREFIX}{self.rows:,} rows, {self.megabytes:.1f} MB in {self.seconds:.1f} s" + (
            f" ({rate})" if rate else ""
        )

    @classmethod
    def parse(cls, message: str) -> Progress | None:
        """The Progress a `text()` line describes (bytes to 0.1 MB), or None for any other line."""
        match = _PATTERN.match(message)
        if match is None:
            return None
        return cls(
            rows=int(match["rows"].replace(",", "")),
            bytes=round(float(match["mb"]) * 1_000_000),
            seconds=float(match["seconds"]),
        )


class ProgressReporter:
    """Called with the running totals after each batch; logs at most once per `interval` seconds."""

    def __init__(
        self,
        log: _Log,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._log = log
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last = self._started

    def __call__(self, rows: int, written_bytes: int) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        self._log.info(Progress(rows, written_bytes, now - self._started).text())
