"""Bad and hostile export lists are rejected before any network request.

Both emulators sit behind FaultProxy, which counts every byte that reaches them; loading the
definitions (what `dagster dev`, the CLI and the daemon all do first) with each bad list must
raise ConfigError and send nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from data_migration.config import ConfigError
from data_migration.definitions import build_definitions
from data_migration_tests.faultproxy import DOWN, UP, FaultProxy
from data_migration_tests.support import BAD_ENTRIES, HOSTILE_S3_PATHS, Snowflake

HOSTILE_LOADS = [
    {"table": "T; DROP TABLE ORDERS", "from": "ORDERS", "mode": "replace"},
    {"table": 'A.B."C"" ; DROP', "from": "ORDERS", "mode": "append"},
    {"table": "T", "from": "ORDERS; DROP TABLE X", "mode": "append"},
    {"table": "T", "from": "ORDERS", "mode": "merge", "keys": ["ID) OR 1=1 --"]},
    {"table": "T", "s3_path": "../../etc/passwd", "mode": "append"},
    {"table": "T", "s3_path": "s3://other-bucket/x.parquet", "mode": "append"},
    {"table": "T", "s3_path": "in/x.parquet", "mode": "append; DROP"},
]


@pytest.fixture
def proxied_env(
    production_env: dict, fake_snowflake: Snowflake, moto_endpoint: str
) -> Iterator[tuple[dict, list[FaultProxy]]]:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxies = [FaultProxy(fake_snowflake.host, fake_snowflake.port), FaultProxy(host, int(port))]
    env = {**production_env, "SNOWFLAKE_PORT": str(proxies[0].port), "AWS_ENDPOINT_URL": proxies[1].url}
    yield env, proxies
    for proxy in proxies:
        proxy.stop()


def test_every_bad_list_is_rejected_with_zero_requests(proxied_env: tuple[dict, list[FaultProxy]], tmp_path: Path):
    env, proxies = proxied_env
    documents: list[str] = [f"exports:\n  - {entry}\n" for entry, _ in BAD_ENTRIES]
    documents += [yaml.safe_dump({"exports": [{"table": "ORDERS", "s3_path": key}]}) for key in HOSTILE_S3_PATHS]
    # Loads: the target, the keys, the source and the path are names and keys, never SQL or URLs.
    orders = {"table": "ORDERS", "s3_path": "exports/orders.parquet"}
    documents += [yaml.safe_dump({"exports": [orders], "loads": [load]}, sort_keys=False) for load in HOSTILE_LOADS]
    rejected = 0
    for index, text in enumerate(documents):
        path = tmp_path / f"bad-{index}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"(exports|loads)\[0\]"):
            build_definitions(path, env)
        rejected += 1
    print(
        f"\n{rejected} bad or hostile export lists rejected at load; bytes sent to Snowflake and S3: "
        f"{sum(p.bytes_seen[UP] + p.bytes_seen[DOWN] for p in proxies)}"
    )
    assert rejected == len(BAD_ENTRIES) + len(HOSTILE_S3_PATHS) + len(HOSTILE_LOADS) >= 50
    assert all(p.bytes_seen == {UP: 0, DOWN: 0} for p in proxies)
    assert all(p.cuts == 0 for p in proxies)


def test_the_proxies_do_count_requests(proxied_env: tuple[dict, list[FaultProxy]], tmp_path: Path):
    """The zero above is meaningful: a good list, materialized, does go through both proxies."""
    import dagster as dg

    env, proxies = proxied_env
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump({"exports": [{"table": "REGION", "s3_path": "r.parquet"}]}))
    defs = build_definitions(path, env)
    assert all(p.bytes_seen == {UP: 0, DOWN: 0} for p in proxies)  # loading alone sends nothing
    result = dg.materialize(defs.assets, resources=defs.resources)  # type: ignore[arg-type]
    assert result.success
    assert all(p.bytes_seen[UP] > 0 and p.bytes_seen[DOWN] > 0 for p in proxies)
