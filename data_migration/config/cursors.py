"""Cursor values for incremental exports, without Dagster and without the network.

Owns the validated `incremental:` entry (`IncrementSpec`), cursor values (`CursorValue`: a NUMBER,
DATE or TIMESTAMP value kept as exact text, never a float or a truncated datetime, written back as
a typed literal), the lookback, and the window one run exports (`CursorWindow`). Bounds reach
Snowflake as typed literals the project formats from values it parsed (from the query's result,
from the YAML, or from the manifest after checking their form), never as text pasted from the YAML
or the bucket. How a run picks its window and keeps its mark is exports/increments.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from data_migration.config.durations import EXAMPLES, duration_seconds
from data_migration.config.names import Identifier
from data_migration.config.problems import one_column

Kind = Literal["number", "date", "timestamp_ntz", "timestamp_tz"]
KINDS: tuple[str, ...] = ("number", "date", "timestamp_ntz", "timestamp_tz")

_NUMBER = re.compile(r"^-?\d{1,38}(\.\d{1,37})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?$")
_NS_PER_DAY = 86_400 * 10**9
_EPOCH = date(1970, 1, 1)
_UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


class CursorError(ValueError):
    """A cursor value or mark that cannot be used: an unsupported type, or a malformed mark."""


@dataclass(frozen=True)
class Lookback:
    """How far before the mark a run re-reads: a duration (date and timestamp cursors) or an
    amount (NUMBER cursors)."""

    text: str  # as written, for messages and metadata
    seconds: int | None = None
    amount: Decimal | None = None


def parse_lookback(value: Any) -> Lookback:
    """A duration (`"1h"`, `"30 minutes"`, `"2 days"`: config/durations.py), or a number (for a
    NUMBER cursor). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration or a number")
    if isinstance(value, int | float):
        amount = Decimal(str(value))
        if amount < 0 or not amount.is_finite():
            raise ValueError(f"{value!r} must be zero or more")
        return Lookback(str(value), amount=amount)
    if isinstance(value, str) and (seconds := duration_seconds(value)) is not None:
        return Lookback(value, seconds=seconds)
    raise ValueError(
        f"{value!r} is not a lookback: write a duration such as {EXAMPLES} "
        "(for a date or timestamp cursor), or a number (for a NUMBER cursor)"
    )


def parse_initial(value: Any) -> str:
    """The first run's lower bound as exact text: a number, a date, or a date and time (UTC).
    Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number or a date")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        text = str(value)
        if not _NUMBER.match(text):
            raise ValueError(f"{value!r} is not a plain number")
        return text
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.match(text) or _date_or_none(text) is not None or _timestamp_ns_or_none(text) is not None:
            return text
    raise ValueError(
        f"{value!r} is not a lower bound: write a date ('2024-01-01'), a date and time in UTC "
        "('2024-01-01 06:00:00') or a number"
    )


@dataclass(frozen=True)
class IncrementSpec:
    cursor: Identifier  # a column of the export's result
    initial: str | None = None  # inclusive lower bound of the first run (and of a full refresh)
    lookback: Lookback | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor.name,
            **({"initial": self.initial} if self.initial is not None else {}),
            **({"lookback": self.lookback.text} if self.lookback is not None else {}),
        }


@dataclass(frozen=True)
class CursorValue:
    """One cursor value, exact: a NUMBER as its decimal text, a DATE as YYYY-MM-DD, a timestamp as
    nanoseconds since the epoch (UTC for TIMESTAMP_TZ and _LTZ, wall clock for _NTZ)."""

    kind: Kind
    number: Decimal | None = None
    day: date | None = None
    ns: int | None = None

    @classmethod
    def from_arrow(cls, scalar: Any, column: str) -> CursorValue | None:
        """The value of `SELECT MAX(cursor)`, as the connector returns it (None for NULL)."""
        import pyarrow as pa

        kind = scalar.type
        if not scalar.is_valid:
            return None
        if pa.types.is_integer(kind) or pa.types.is_decimal(kind):
            return cls("number", number=Decimal(scalar.as_py()))
        if pa.types.is_date(kind):
            return cls("date", day=scalar.cast(pa.date32()).as_py())
        if pa.types.is_timestamp(kind):
            ns = scalar.cast(pa.int64()).as_py() * _UNIT_NS[kind.unit]
            return cls("timestamp_tz" if kind.tz else "timestamp_ntz", ns=ns)
        raise CursorError(
            f"the cursor column {column} is {kind} in the result; a cursor must be a NUMBER (integer or "
            "fixed-point), DATE or TIMESTAMP column"
        )

    @classmethod
    def parse(cls, kind: str, text: str) -> CursorValue:
        """A value as the manifest (or the YAML's `initial`) writes it; raises CursorError."""
        if kind == "number":
            if not _NUMBER.match(text):
                raise CursorError(f"{text!r} is not a number")
            return cls("number", number=Decimal(text))
        if kind == "date":
            day = _date_or_none(text)
            if day is None:
                ns = _timestamp_ns_or_none(text)
                if ns is None or ns % _NS_PER_DAY:
                    raise CursorError(f"{text!r} is not a date (YYYY-MM-DD) for a DATE cursor")
                day = _EPOCH + timedelta(days=ns // _NS_PER_DAY)
            return cls("date", day=day)
        if kind in ("timestamp_ntz", "timestamp_tz"):
            ns = _timestamp_ns_or_none(text)
            if ns is None:
                day = _date_or_none(text)
                if day is None:
                    raise CursorError(f"{text!r} is not a date or a date and time")
                ns = (day - _EPOCH).days * _NS_PER_DAY
            return cls(kind, ns=ns)  # type: ignore[arg-type]
        raise CursorError(f"{kind!r} is not a cursor kind ({', '.join(KINDS)})")

    def text(self) -> str:
        """Exact text: `123.45`, `2024-01-01`, `2024-01-01 00:00:00.123456789` (UTC for _tz)."""
        if self.kind == "number":
            assert self.number is not None
            return format(self.number, "f")
        if self.kind == "date":
            assert self.day is not None
            return self.day.isoformat()
        assert self.ns is not None
        days, rest = divmod(self.ns, _NS_PER_DAY)
        seconds, fraction = divmod(rest, 10**9)
        day = _EPOCH + timedelta(days=days)
        return f"{day.isoformat()} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{fraction:09d}"

    def literal(self) -> str:
        """A Snowflake literal of the cursor's type, from the project's own text. Dates and
        timestamps carry their format: a plain string cast would be read by the account's
        DATE_INPUT_FORMAT and TIMESTAMP_INPUT_FORMAT
        (https://docs.snowflake.com/en/sql-reference/date-time-input-output)."""
        text = self.text()
        if self.kind == "number":
            scale = len(text.split(".", 1)[1]) if "." in text else 0
            return f"CAST('{text}' AS NUMBER(38,{scale}))"
        if self.kind == "date":
            return f"TO_DATE('{text}', 'YYYY-MM-DD')"
        if self.kind == "timestamp_ntz":
            return f"TO_TIMESTAMP_NTZ('{text}', 'YYYY-MM-DD HH24:MI:SS.FF9')"
        # An instant: compared with a TIMESTAMP_TZ or _LTZ column as the same point in time.
        return f"TO_TIMESTAMP_TZ('{text} +00:00', 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')"

    def order(self) -> Any:
        return self.number if self.kind == "number" else self.day if self.kind == "date" else self.ns

    def minus(self, lookback: Lookback) -> CursorValue:
        if self.kind == "number":
            if lookback.amount is None:
                raise CursorError(
                    f"lookback {lookback.text!r} is a duration, but the cursor is a NUMBER: give a number"
                )
            assert self.number is not None
            return CursorValue("number", number=self.number - lookback.amount)
        if lookback.seconds is None:
            raise CursorError(
                f"lookback {lookback.text!r} is a number, but the cursor is a {self.kind.upper()}: give a duration "
                "such as '1 hour'"
            )
        if self.kind == "date":
            assert self.day is not None
            # A DATE cursor re-reads whole days: a part of a day reaches back to its start.
            return CursorValue("date", day=self.day - timedelta(days=-(-lookback.seconds // 86400)))
        assert self.ns is not None
        return CursorValue(self.kind, ns=self.ns - lookback.seconds * 10**9)


@dataclass(frozen=True)
class CursorWindow:
    """The rows one run exports: `lower < cursor <= upper` (`lower <= cursor` when the lower
    bound is `initial`), or no row at all when `upper` is None (no row has a cursor yet)."""

    upper: CursorValue | None
    lower: CursorValue | None = None
    lower_inclusive: bool = False
    fresh: bool = False  # a new generation from scratch: the manifest will list only it
    reason: str = ""  # why this window (for the log and the metadata)

    def sql(self, query: str, cursor: Identifier) -> str:
        column = cursor.quoted()
        if self.upper is None:
            return f"SELECT * FROM ({query}) WHERE 1 = 0"
        conditions = []
        if self.lower is not None:
            conditions.append(f"{column} {'>=' if self.lower_inclusive else '>'} {self.lower.literal()}")
        conditions.append(f"{column} <= {self.upper.literal()}")
        return f"SELECT * FROM ({query}) WHERE " + " AND ".join(conditions)

    def describe(self) -> str:
        if self.upper is None:
            return "no row has a cursor yet"
        lower = "(-∞" if self.lower is None else ("[" if self.lower_inclusive else "(") + self.lower.text()
        return f"{lower}, {self.upper.text()}]"


def _date_or_none(text: str) -> date | None:
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _timestamp_ns_or_none(text: str) -> int | None:
    match = _TIMESTAMP.match(text)
    if not match:
        return None
    day = _date_or_none(match.group(1))
    hours, minutes, seconds = int(match.group(2)), int(match.group(3)), int(match.group(4) or 0)
    if day is None or hours > 23 or minutes > 59 or seconds > 59:
        return None
    fraction = int((match.group(5) or "").ljust(9, "0"))
    return ((day - _EPOCH).days * 86400 + hours * 3600 + minutes * 60 + seconds) * 10**9 + fraction


class IncrementalEntry(BaseModel):
    """The `incremental:` mapping of an entry; initial and lookback are checked by parse_incremental."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cursor: str = Field(description="A column of the result that grows: NUMBER, DATE or TIMESTAMP.")
    initial: Any = Field(
        default=None, description="The first run exports rows from this value on; default: every row with a cursor."
    )
    lookback: Any = Field(
        default=None,
        description="Re-read this much before the mark each run, for late rows: a duration (e.g. 1h, "
        "'30 minutes', 2d) for a date or timestamp cursor, a number for a NUMBER cursor.",
    )


def parse_incremental(label: str, given: IncrementalEntry | None, problems: list[str]) -> IncrementSpec | None:
    """The `incremental:` mapping checked for meaning (its types are checked with the entry)."""
    if given is None:
        return None
    where = f"{label}.incremental"
    before = len(problems)
    column = one_column(given.cursor, f"{where}.cursor", problems)
    initial = lookback = None
    if given.initial is not None:
        try:
            initial = parse_initial(given.initial)
        except ValueError as error:
            problems.append(f"{where}.initial: {error}")
    if given.lookback is not None:
        try:
            lookback = parse_lookback(given.lookback)
        except ValueError as error:
            problems.append(f"{where}.lookback: {error}")
    if len(problems) > before or column is None:
        return None
    return IncrementSpec(cursor=column, initial=initial, lookback=lookback)
