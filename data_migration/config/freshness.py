"""The `freshness:` of an export or a load: how late its last materialization may be before the
UI shows it amber (warn) or red (fail), in one of Dagster's two forms
(https://docs.dagster.io/guides/observe/asset-freshness-policies):

    freshness: {fail_after: 26h, warn_after: 25h}        # a window since the last materialization
    freshness: {deadline_cron: "0 7 * * *", lower_bound: 24h, timezone: UTC}
                                                         # materialized between 24h before each 07:00 and 07:00

Durations are the list's one grammar (config/durations.py), e.g. 90m, 25h, 2 days. Without
Dagster: `FreshnessSpec.policy()` builds the policy when the asset is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from data_migration.config.durations import EXAMPLES, duration_seconds
from data_migration.config.problems import valid_cron


class FreshnessEntry(BaseModel):
    """The `freshness:` mapping as written; its meaning is checked by `parse_freshness`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    fail_after: str | None = Field(default=None, description="Red when the last materialization is older, e.g. 26h.")
    warn_after: str | None = Field(default=None, description="Amber when it is older, e.g. 25h (below fail_after).")
    deadline_cron: str | None = Field(
        default=None, description="Or: a materialization is due by each tick of this cron, e.g. '0 7 * * *'."
    )
    lower_bound: str | None = Field(
        default=None, description="With deadline_cron: how long before each tick a materialization counts, e.g. 24h."
    )
    timezone: str | None = Field(
        default=None, json_schema_extra={"default": "UTC"}, description="With deadline_cron: its time zone."
    )


@dataclass(frozen=True)
class FreshnessSpec:
    fail_after: timedelta | None = None
    warn_after: timedelta | None = None
    deadline_cron: str | None = None
    lower_bound: timedelta | None = None
    timezone: str = "UTC"

    def policy(self) -> Any:
        """Dagster's FreshnessPolicy (imported only here)."""
        from dagster import FreshnessPolicy

        if self.deadline_cron is not None:
            assert self.lower_bound is not None
            return FreshnessPolicy.cron(
                deadline_cron=self.deadline_cron, lower_bound_delta=self.lower_bound, timezone=self.timezone
            )
        assert self.fail_after is not None
        return FreshnessPolicy.time_window(fail_window=self.fail_after, warn_window=self.warn_after)

    def describe(self) -> str:
        if self.deadline_cron is not None:
            return f"materialized in the {self.lower_bound} before each `{self.deadline_cron}` ({self.timezone})"
        warn = f", amber after {self.warn_after}" if self.warn_after else ""
        return f"red when the last materialization is older than {self.fail_after}{warn}"


def parse_duration(value: str) -> timedelta:
    seconds = duration_seconds(value)
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration such as {EXAMPLES}")
    if seconds < 60:
        raise ValueError(f"{value!r} is shorter than Dagster's minimum of one minute")
    return timedelta(seconds=seconds)


def parse_freshness(where: str, entry: FreshnessEntry, problems: list[str]) -> FreshnessSpec | None:
    """The entry checked for meaning, each problem named `where.field: …`."""
    before = len(problems)
    durations: dict[str, timedelta] = {}
    for name in ("fail_after", "warn_after", "lower_bound"):
        value = getattr(entry, name)
        if value is not None:
            try:
                durations[name] = parse_duration(value)
            except ValueError as error:
                problems.append(f"{where}.{name}: {error}")
    window = entry.fail_after is not None or entry.warn_after is not None
    cron = entry.deadline_cron is not None or entry.lower_bound is not None or entry.timezone is not None
    if window == cron:
        problems.append(
            f"{where}: give either fail_after (and warn_after), or deadline_cron and lower_bound "
            "(and timezone), not both or neither"
        )
    elif window and entry.fail_after is None:
        problems.append(f"{where}.fail_after: required with warn_after (the age at which the asset turns red)")
    elif window and "warn_after" in durations and "fail_after" in durations:
        if durations["warn_after"] >= durations["fail_after"]:
            problems.append(f"{where}.warn_after: {entry.warn_after!r} must be shorter than fail_after")
    elif cron:
        if entry.deadline_cron is None or entry.lower_bound is None:
            missing = "deadline_cron" if entry.deadline_cron is None else "lower_bound"
            problems.append(f"{where}.{missing}: required in the cron form of freshness")
        elif not valid_cron(entry.deadline_cron):
            problems.append(f"{where}.deadline_cron: {entry.deadline_cron!r} is not a valid cron string")
        if entry.timezone is not None:
            try:
                ZoneInfo(entry.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(f"{where}.timezone: {entry.timezone!r} is not a time zone name such as UTC")
    if len(problems) > before:
        return None
    spec = FreshnessSpec(
        fail_after=durations.get("fail_after"),
        warn_after=durations.get("warn_after"),
        deadline_cron=entry.deadline_cron,
        lower_bound=durations.get("lower_bound"),
        timezone=entry.timezone or "UTC",
    )
    try:
        spec.policy()  # Dagster's own rules, e.g. a lower bound longer than the cron's interval
    except Exception as error:  # noqa: BLE001 - reported as the entry's problem
        problems.append(f"{where}: {str(error).splitlines()[0]}")
        return None
    return spec
