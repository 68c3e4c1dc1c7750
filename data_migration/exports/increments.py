"""Incremental exports by cursor: each run exports only the rows past the mark the last run left.

A run reads the committed manifest (its version and mark), fixes the upper bound
`hi = MAX(cursor)` first, and exports `lo < cursor <= hi` where `lo` is the mark minus `lookback`
(on the first run or a full refresh: `cursor >= initial`, or every row with a cursor). The new
parts, the earlier parts and the new mark go into one manifest, written with the conditional
write of a split export (files/layout.py), so the data and the mark commit together or not at all.
This module owns the mark as the manifest keeps it (`Mark`), the MAX statement, and the plan of a
run (`plan`); the cursor values and windows are config/cursors.py.

Only a first run and an explicit full refresh start a new generation from scratch, whose commit
removes every earlier part: a manifest this export cannot continue (no mark, a mark for another
cursor or of another type) fails the run (`MarkMismatch`) rather than lose what it lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_migration.config.cursors import CursorError, CursorValue, CursorWindow, IncrementSpec
from data_migration.config.names import Identifier

STATE_FIELD = "increment"  # the manifest's top-level field holding the cursor and its mark


class MarkMismatch(Exception):
    """The committed manifest cannot be continued by this export as configured (another cursor, a
    cursor of another type, no mark): only an explicit full refresh may replace what it lists."""


@dataclass(frozen=True)
class Mark:
    """The committed state of an incremental export, as its manifest keeps it."""

    cursor: str  # the column's name (as Snowflake stores it)
    value: CursorValue | None  # None: no row with a cursor has been exported yet

    def to_manifest(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "kind": self.value.kind if self.value else None,
            "mark": self.value.text() if self.value else None,
        }

    @classmethod
    def from_manifest(cls, content: dict[str, Any]) -> Mark | None:
        """The mark in a manifest's content; None when the manifest carries none (it was not
        written by an incremental export). Raises CursorError when it is malformed."""
        state = content.get(STATE_FIELD)
        if state is None:
            return None
        if not isinstance(state, dict) or not isinstance(state.get("cursor"), str):
            raise CursorError(f"{STATE_FIELD!r} is not a mapping with a cursor")
        kind, text = state.get("kind"), state.get("mark")
        if text is None:
            return cls(state["cursor"], None)
        if not isinstance(kind, str) or not isinstance(text, str):
            raise CursorError(f"the mark {text!r} of kind {kind!r} is not text")
        return cls(state["cursor"], CursorValue.parse(kind, text))


def max_sql(query: str, cursor: Identifier) -> str:
    """The run's upper bound, fixed before any row is read: the cursor's largest value."""
    return f"SELECT MAX({cursor.quoted()}) FROM ({query})"


def plan(
    spec: IncrementSpec, committed: Mark | None, upper: CursorValue | None, *, exists: bool, full_refresh: bool
) -> CursorWindow | None:
    """The window this run exports, or None when nothing is past the mark (commit nothing).

    `committed` is the mark of the manifest read at the start of the run (None without one);
    `exists` says whether a manifest exists at all; `upper` is MAX(cursor) read afterwards.
    Only a first run and a full refresh start afresh: a fresh window's commit lists only its own
    parts, and the parts it no longer lists are deleted. Raises MarkMismatch when the manifest
    cannot be continued (no mark, another cursor, another type).
    """
    if exists and not full_refresh:
        _check_continues(spec, committed, upper)  # before `initial` is read as the cursor's new type
    initial = CursorValue.parse(upper.kind, spec.initial) if spec.initial is not None and upper else None
    if full_refresh or not exists:
        reason = "full refresh requested" if full_refresh else "first run"
        return CursorWindow(upper, initial, lower_inclusive=True, fresh=True, reason=reason)
    assert committed is not None
    if upper is None or (committed.value is not None and upper.order() <= committed.value.order()):
        return None
    if committed.value is None:  # the earlier runs found no row with a cursor
        return CursorWindow(upper, initial, lower_inclusive=True, reason="first rows with a cursor")
    lower = committed.value.minus(spec.lookback) if spec.lookback else committed.value
    if initial is not None and lower.order() < initial.order():
        return CursorWindow(upper, initial, lower_inclusive=True, reason="increment (lookback clipped at initial)")
    return CursorWindow(
        upper, lower, reason="increment" + (f" re-reading {spec.lookback.text}" if spec.lookback else "")
    )


def _check_continues(spec: IncrementSpec, committed: Mark | None, upper: CursorValue | None) -> None:
    """Raise MarkMismatch unless the committed mark is one this export can build on."""
    if committed is None:
        raise MarkMismatch("it carries no mark (an export that is not incremental wrote it)")
    if committed.cursor != spec.cursor.name:
        raise MarkMismatch(
            f"its mark is for cursor {committed.cursor}, but the export's cursor is now {spec.cursor.name}"
        )
    if committed.value is not None and upper is not None and committed.value.kind != upper.kind:
        raise MarkMismatch(
            f"its mark is a {committed.value.kind.upper()}, but the cursor {spec.cursor.name} is now a "
            f"{upper.kind.upper()}"
        )
