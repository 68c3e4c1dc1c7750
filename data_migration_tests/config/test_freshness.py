"""`freshness:` on an export or a load becomes the asset's Dagster FreshnessPolicy; every mistake
in it is named with its entry and field, before any network call."""

from __future__ import annotations

from datetime import timedelta

import pytest

from data_migration.config import ConfigError, parse_exports

ORDERS = {"table": "ORDERS", "s3_path": "exports/orders/data.parquet"}


def test_both_forms_become_dagsters_policies():
    config = parse_exports(
        {
            "exports": [
                {**ORDERS, "freshness": {"fail_after": "26h", "warn_after": "25 hours"}},
                {"table": "CUSTOMER", "s3_path": "c.parquet", "freshness": {"deadline_cron": "0 7 * * *",
                 "lower_bound": "1d", "timezone": "Europe/Berlin"}},
            ],
            "loads": [{"table": "A.B.ORDERS_COPY", "from": "ORDERS", "mode": "replace",
                       "freshness": {"fail_after": "2d"}}],
        },
        "list.yaml",
    )  # fmt: skip
    window, cron = (spec.freshness for spec in config.exports)
    assert window is not None and cron is not None
    assert (window.fail_after, window.warn_after) == (timedelta(hours=26), timedelta(hours=25))
    policy = window.policy()
    assert (policy.fail_window.to_timedelta(), policy.warn_window.to_timedelta()) == (
        timedelta(hours=26),
        timedelta(hours=25),
    )
    assert cron.policy().deadline_cron == "0 7 * * *" and cron.policy().timezone == "Europe/Berlin"
    assert config.loads[0].freshness is not None and config.loads[0].freshness.fail_after == timedelta(days=2)
    assert config.exports[0].code_version == parse_exports({"exports": [ORDERS]}, "list.yaml").exports[0].code_version


@pytest.mark.parametrize(
    ("freshness", "expected"),
    [
        ({"fail_after": "26h", "deadline_cron": "0 7 * * *"}, "freshness: give either fail_after"),
        ({}, "freshness: give either fail_after"),
        ({"warn_after": "1h"}, "freshness.fail_after: required with warn_after"),
        ({"fail_after": "1h", "warn_after": "2h"}, "freshness.warn_after: '2h' must be shorter than fail_after"),
        ({"fail_after": "a day"}, "freshness.fail_after: 'a day' is not a duration such as 90m, 25h, 1 hour"),
        ({"fail_after": "30s"}, "freshness.fail_after: '30s' is shorter than Dagster's minimum of one minute"),
        ({"deadline_cron": "0 7 * * *"}, "freshness.lower_bound: required in the cron form"),
        ({"deadline_cron": "at seven", "lower_bound": "1h"}, "freshness.deadline_cron: 'at seven' is not a valid cron"),
        ({"deadline_cron": "0 7 * * *", "lower_bound": "1h", "timezone": "Mars/Olympus"}, "freshness.timezone"),
        ({"deadline_cron": "0 * * * *", "lower_bound": "2h"}, "exports[0] (ORDERS).freshness: "),
        ({"fail_after": "1h", "colour": "red"}, "freshness.colour: unknown field (allowed: fail_after, warn_after"),
    ],
)
def test_every_mistake_is_named_with_its_field(freshness: dict, expected: str):
    with pytest.raises(ConfigError) as raised:
        parse_exports({"exports": [{**ORDERS, "freshness": freshness}]}, "list.yaml")
    assert expected in str(raised.value)
