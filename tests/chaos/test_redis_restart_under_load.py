"""redis-server restarted mid-load (same port and AOF dir): the pools keep consuming, nothing is lost."""

from __future__ import annotations

import time

import pytest

from tests.chaos.accounting import account, check
from tests.chaos.rig import Load, wait_final

pytestmark = pytest.mark.chaos

DOWN_S = 3.0


def test_a_redis_restart_mid_load_loses_nothing(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack()
    store = stack.make_store()
    load = Load(stack, stack.shoppers(4), store, n=200, rate=25.0).start()

    load.wait_answered(70, timeout=30)
    fault_at = time.monotonic()
    stack.redis.stop()
    time.sleep(DOWN_S)
    stack.redis.start()
    outage = time.monotonic() - fault_at

    # Acting as the runner: a worker that died is started again (and noted).
    restarted: list[str] = []

    def supervise(_: float) -> None:
        for pool in stack.pools:
            if not stack.live(pool):
                restarted.append(pool)
                stack.start_worker(pool)

    supervise(0)
    load.join()
    finish = wait_final(stack, load.accepted_ids, timeout=150, store_id=store.id, nudge=supervise)
    load.join_payments(timeout=10)
    tally = account(stack, load.subs, store, finish=finish)
    during = [s for s in load.subs if s.answered_at and fault_at <= s.answered_at <= fault_at + outage + 2]
    parked = stack.db.outbox.count_documents({"task": "orders.process"})
    notes = [f"{len(during)} submits answered during the blip (+2s): {sum(s.status == 202 for s in during)}x202, "
             f"{sum(s.status == 503 for s in during)}x503; {parked} order(s) went through the outbox",
             f"workers restarted by the test: {restarted or 'none'}", finish.note()]
    record(tally.result("redis restart", finish.since(fault_at), outage_s=outage,
                        notes=notes, restarted=restarted))

    assert restarted == [], f"pools whose worker died in the restart: {restarted}"
    check(tally)
