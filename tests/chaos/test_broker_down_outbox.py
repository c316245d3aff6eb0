"""The broker down at submit: orders are accepted through the outbox, and the relay sends them when it is back."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.chaos.accounting import account, check
from tests.chaos.rig import Load, wait_final, wait_until

pytestmark = pytest.mark.chaos


def test_with_the_broker_down_orders_wait_in_the_outbox_and_all_complete(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack()
    store = stack.make_store()
    shoppers = stack.shoppers(4)  # logging in needs Redis (the login guard)

    fault_at = time.monotonic()
    stack.redis.stop()
    load = Load(stack, shoppers, store, n=150, rate=40.0).start()
    load.join(timeout=120)
    ids = load.accepted_ids
    # Each order's recorded follow-ups (its processing, its "accepted" notification) parked under fixed ids.
    parked = {e["order_id"]: e for e in stack.db.outbox.find({"order_id": {"$in": ids}, "task": "orders.process"})}
    pending_while_down = sum(e["status"] == "pending" and e.get("send_task_id") == f"{order_id}:process"
                             for order_id, e in parked.items())
    not_final_while_down = stack.db.orders.count_documents({"_id": {"$in": ids}, "status": "accepted"})

    stack.redis.start()
    back_at = time.monotonic()
    outage = back_at - fault_at
    finish = wait_final(stack, ids, timeout=150, store_id=store.id)
    load.join_payments(timeout=10)
    drained = None
    with contextlib.suppress(TimeoutError):  # what is left is recorded and asserted below
        drained = wait_until("the outbox drained", lambda: stack.db.outbox.count_documents(
            {"status": {"$ne": "sent"}}) == 0, timeout=20)
    sent = stack.db.outbox.count_documents({"order_id": {"$in": ids}, "status": "sent", "task": "orders.process"})
    left = list(stack.db.outbox.find({"status": {"$ne": "sent"}}, {"task": 1, "status": 1, "last_error": 1}))
    tally = account(stack, load.subs, store, finish=finish)
    notes = [f"{pending_while_down}/{len(ids)} accepted orders parked in the outbox while Redis was down "
             f"({not_final_while_down} still accepted then); {sent} entries sent by the relay, {len(left)} not sent",
             f"recovery counted from Redis stopped; from Redis back: "
             f"{'-' if finish.final_at is None else f'{finish.final_at - back_at:.1f}s'}", finish.note()]
    record(tally.result("broker down at submit", finish.since(fault_at),
                        outage_s=outage, notes=notes, outbox_left=left, outbox_drained_s=drained))

    assert tally.errors == [] and tally.refused == 0, tally.errors
    assert len(ids) == len(load.subs), "every submit answered 202"
    assert pending_while_down == len(ids), "every accepted order waited in the outbox, pending"
    assert sent == len(ids) and left == [], left
    check(tally)
