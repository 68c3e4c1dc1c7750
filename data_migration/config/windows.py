"""Time-partitioned exports: one object per hour, day, week or month of a date or timestamp column.

Owns what a partition is, without Dagster and without the network: the validated `partition:`
entry (`PartitionSpec`), the partition keys (Dagster's default key formats, in UTC), each
partition's window, its object key (`{partition}` in `s3_path` replaced by the key), and the SQL
that restricts the export's query to the window, half-open (`column >= start AND column < end`)
with bounds the project writes as typed literals, never user text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from data_migration.config.names import Identifier
from data_migration.config.problems import one_column

if TYPE_CHECKING:  # Dagster is imported only when a definition is built
    from dagster import TimeWindowPartitionsDefinition

Granularity = Literal["hourly", "daily", "weekly", "monthly"]
GRANULARITIES: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly")
PLACEHOLDER = "{partition}"  # in s3_path: replaced by the partition key
# Dagster's default key formats for its time-window partitions definitions.
KEY_FORMATS = {"hourly": "%Y-%m-%d-%H:%M", "daily": "%Y-%m-%d", "weekly": "%Y-%m-%d", "monthly": "%Y-%m-%d"}
# A key of the longest form, to check that an s3_path with {partition} replaced is a valid key.
SAMPLE_KEY = "2024-01-01-00:00"


@dataclass(frozen=True)
class Window:
    """One partition: its key and its half-open time range [start, end), in UTC."""

    key: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class PartitionSpec:
    column: Identifier  # a column of the export's result
    granularity: Granularity
    start: datetime  # UTC, naive
    end: datetime | None = None
    lookback: int = 0

    @property
    def key_format(self) -> str:
        return KEY_FORMATS[self.granularity]

    def definition(self) -> TimeWindowPartitionsDefinition:
        """Dagster's partitions definition: keys in its default format for the granularity, UTC."""
        from dagster import (
            DailyPartitionsDefinition,
            HourlyPartitionsDefinition,
            MonthlyPartitionsDefinition,
            WeeklyPartitionsDefinition,
        )

        kind = {
            "hourly": HourlyPartitionsDefinition,
            "daily": DailyPartitionsDefinition,
            "weekly": WeeklyPartitionsDefinition,
            "monthly": MonthlyPartitionsDefinition,
        }[self.granularity]
        return kind(start_date=self.start, end_date=self.end, timezone="UTC")


def parse_moment(value: Any, granularity: str) -> datetime:
    """A partition bound from the YAML: a date (`1992-01-01`, quoted or not), or for hourly
    partitions also a date and hour (`1992-01-01 06:00`). Raises ValueError."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date (write it as YYYY-MM-DD)")
    formats = ["%Y-%m-%d"] + (["%Y-%m-%d %H:%M", "%Y-%m-%d-%H:%M", "%Y-%m-%dT%H:%M"] if granularity == "hourly" else [])
    for form in formats:
        try:
            return datetime.strptime(value, form)
        except ValueError:
            continue
    expected = "YYYY-MM-DD or YYYY-MM-DD HH:MM" if granularity == "hourly" else "YYYY-MM-DD"
    raise ValueError(f"{value!r} is not a date of the form {expected}")


def object_key(template: str, key: str) -> str:
    """The object key of one partition: `{partition}` in the export's s3_path replaced by `key`."""
    return template.replace(PLACEHOLDER, key)


def window_sql(sql: str, column: Identifier, window: Window) -> str:
    """The export's query restricted to one partition's window, half-open.

    The bounds are TIMESTAMP_NTZ literals the project formats from the window (never text from
    the YAML); the connection's session TIMEZONE is UTC, so a DATE, TIMESTAMP_NTZ, _LTZ or _TZ
    column is compared in UTC.
    """
    return (
        f"SELECT * FROM ({sql}) WHERE {column.quoted()} >= {_literal(window.start)} "
        f"AND {column.quoted()} < {_literal(window.end)}"
    )


def _literal(moment: datetime) -> str:
    """With its format given: a plain string cast would be read by the account's
    TIMESTAMP_INPUT_FORMAT (https://docs.snowflake.com/en/sql-reference/date-time-input-output)."""
    return f"TO_TIMESTAMP_NTZ('{moment:%Y-%m-%d %H:%M:%S}', 'YYYY-MM-DD HH24:MI:SS')"


class PartitionEntry(BaseModel):
    """The `partition:` mapping of an entry; start and end are checked by parse_moment."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    column: str = Field(description="The date or timestamp column of the query's result that places a row.")
    granularity: Granularity = Field(description="hourly, daily, weekly or monthly (UTC).")
    start: Any = Field(description="The first partition's start, e.g. '2024-01-01'.")
    end: Any = Field(default=None, description="Where partitions end (exclusive); default: none, they go on.")
    lookback: NonNegativeInt = Field(
        default=0, description="How many partitions before the latest complete one each scheduled run exports again."
    )


def parse_partition(label: str, given: PartitionEntry | None, problems: list[str]) -> PartitionSpec | None:
    """The `partition:` mapping checked for meaning (its types are checked with the entry)."""
    if given is None:
        return None
    where = f"{label}.partition"
    before = len(problems)
    column = one_column(given.column, f"{where}.column", problems)
    bounds: dict[str, Any] = {}
    for name in ("start", "end"):
        value = getattr(given, name)
        if value is None and name == "end":
            continue
        try:
            bounds[name] = parse_moment(value, given.granularity)
        except ValueError as error:
            problems.append(f"{where}.{name}: {error}")
    if "start" in bounds and "end" in bounds and bounds["end"] <= bounds["start"]:
        problems.append(f"{where}.end: {given.end!r} is not after start {given.start!r}")
    if len(problems) > before:
        return None
    assert column is not None
    return PartitionSpec(
        column=column,
        granularity=given.granularity,
        start=bounds["start"],
        end=bounds.get("end"),
        lookback=given.lookback,
    )
