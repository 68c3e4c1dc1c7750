"""The one grammar of a duration in the list, for every field that takes one (an increment's
`lookback`, a freshness window): a whole number and a unit, with or without a space, the unit
short or long, singular or plural: `90m`, `25h`, `1 hour`, `30 minutes`, `2 days`, `1w`.
Units: s (second), m (minute), h (hour), d (day), w (week)."""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^\s*(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE
)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXAMPLES = "90m, 25h, 1 hour, 30 minutes or 2 days"


def duration_seconds(text: str) -> int | None:
    """The seconds `text` says, or None when it is not a duration of this grammar."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _SECONDS[match.group(2)[0].lower()]
