"""One grammar for every duration in the list (config/durations.py): `lookback: "1h"` was refused
while `fail_after: 1h` was accepted, and `fail_after: "1 hour"` the other way round."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from data_migration.config import ConfigError, parse_exports
from data_migration.config.durations import duration_seconds

SPELLINGS = {
    "1h": 3600, "1 h": 3600, "1hr": 3600, "1 hour": 3600, "2 hours": 7200, "90m": 5400, "90 min": 5400,
    "30 minutes": 1800, "45s": 45, "1 second": 1, "2d": 172800, "2 days": 172800, "1w": 604800, "1 WEEK": 604800,
}  # fmt: skip
REFUSED = ["an hour", "1.5h", "1 month", "h", "-1h", "1h30m", "", "1 hours ago"]


@pytest.mark.parametrize(("text", "seconds"), SPELLINGS.items())
def test_every_spelling_means_the_same_in_every_field(text: str, seconds: int):
    assert duration_seconds(text) == seconds
    entry: dict[str, Any] = {
        "table": "EVENTS",
        "s3_path": "exports/events/data.parquet",
        "incremental": {"cursor": "UPDATED_AT", "lookback": text},
    }
    if seconds >= 60:  # Dagster's freshness policies take a minute at least
        entry["freshness"] = {"fail_after": text}
    (spec,) = parse_exports({"exports": [entry]}, "list.yaml").exports
    assert spec.incremental is not None and spec.incremental.lookback is not None
    assert spec.incremental.lookback.seconds == seconds
    if seconds >= 60:
        assert spec.freshness is not None and spec.freshness.fail_after == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", REFUSED)
def test_what_is_not_a_duration_is_refused_in_every_field_alike(text: str):
    entry = {
        "table": "EVENTS",
        "s3_path": "exports/events/data.parquet",
        "incremental": {"cursor": "UPDATED_AT", "lookback": text},
        "freshness": {"fail_after": text},
    }
    with pytest.raises(ConfigError) as raised:
        parse_exports({"exports": [entry]}, "list.yaml")
    message = str(raised.value)
    assert f"incremental.lookback: {text!r} is not a lookback: write a duration such as 90m, 25h" in message
    assert f"freshness.fail_after: {text!r} is not a duration such as 90m, 25h" in message
