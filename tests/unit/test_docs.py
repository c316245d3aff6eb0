"""The README keeps up with the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from kirana.config import ENV_NAMES
from kirana.seed import catalog
from workers.pools import POOLS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [name for name in ENV_NAMES.values() if f"`{name}`" not in README]
    assert not missing


def test_every_pool_is_in_the_pool_table() -> None:
    for pool in POOLS:
        row = re.search(rf"^\| {pool.name} \| `{pool.queues[0].value}` \| {pool.pool} \| {pool.concurrency} \|",
                        README, re.M)
        assert row, f"README's pool table is out of date for {pool.name}"


def test_the_documented_example_order_names_real_products() -> None:
    skus = {p["sku"] for p in catalog()}
    assert set(re.findall(r'"sku":"([A-Z0-9-]+)"', README)) <= skus
