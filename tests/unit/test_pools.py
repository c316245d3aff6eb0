"""The pool table and the commands built from it."""

from __future__ import annotations

import pytest

from workers.__main__ import main
from workers.pools import BY_NAME, POOLS, worker_command


@pytest.mark.parametrize("pool", POOLS, ids=[p.name for p in POOLS])
def test_each_pool_starts_a_named_worker_on_its_own_queues(pool) -> None:  # type: ignore[no-untyped-def]
    argv = worker_command(pool, python="python")

    assert argv[:6] == ["python", "-m", "celery", "-A", "tasks.app", "worker"]
    assert argv[argv.index("-Q") + 1] == ",".join(q.value for q in pool.queues)
    assert argv[argv.index("-n") + 1] == f"{pool.name}@{pool.name}.%h"
    assert argv[argv.index("-P") + 1] == pool.pool
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"
    assert ("--max-tasks-per-child" in argv) == (pool.pool == "prefork")


def test_concurrency_can_be_overridden_per_pool(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KIRANA_POOL_ORDERS_CONCURRENCY", "5")
    argv = worker_command(BY_NAME["orders"])
    assert argv[argv.index("-c") + 1] == "5"


def test_the_cli_prints_one_pools_command_and_refuses_unknown_pools(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["command", "payments"]) == 0
    assert "-Q payments -n payments@payments.%h" in capsys.readouterr().out
    assert main(["start", "nonsense"]) == 2
    assert main(["list"]) == 0
    assert "notifications" in capsys.readouterr().out
