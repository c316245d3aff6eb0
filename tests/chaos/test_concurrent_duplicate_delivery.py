"""The same orders.process delivered twice at once, to two workers of the orders pool: one effect.

Each order gets two messages back to back; the two workers (one task at a
time each) take one each and run them side by side. For half the orders the
two messages are the same task (one task id), for the other half two tasks.
"""

from __future__ import annotations

import random
import time

import pytest

from kirana import orders
from kirana.orders import NewOrder, OrderItem, PaymentMethod
from tests.chaos.accounting import account, check
from tests.chaos.rig import Shopper, Submission, wait_final

pytestmark = pytest.mark.chaos

N = 150


def test_two_workers_given_the_same_order_at_once_take_stock_once(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    # Two orders workers, one task at a time each (prefetch 1): adjacent copies of a message
    # go one to each worker and run side by side.
    stack = make_stack(pools=("payments", "webhooks", "audit"))
    pair = [stack.start_worker("orders", concurrency=1) for _ in range(2)]
    stack.wait_alive(pair)
    store = stack.make_store()
    rng = random.Random(11)
    customer = Shopper("cust-chaos-dup", "dup@example.in", "")
    subs = []
    for i in range(N):
        items = tuple(OrderItem(sku, rng.randint(1, 3)) for sku in rng.sample(store.skus, rng.randint(1, 3)))
        order, _ = orders.place(stack.db, NewOrder(customer.user_id, store.id, items, PaymentMethod.COD))
        body = {"store_id": store.id, "payment_method": "cod",
                "items": [{"sku": item.sku, "qty": item.qty} for item in items]}
        subs.append(Submission(i, f"direct-{i}", customer, body, status=202, order_id=order["_id"]))

    fault_at = time.monotonic()
    for sub in subs:
        # Even orders: the same task (one task id) twice, as a publish retried after a lost reply, or a
        # redelivery racing the first delivery, would be. Odd orders: two tasks for one order.
        task_id = f"chaos-dup-{sub.n}"
        stack.send("orders.process", sub.order_id, task_id=task_id)
        stack.send("orders.process", sub.order_id, task_id=task_id if sub.n % 2 == 0 else f"{task_id}-again")
    finish = wait_final(stack, [s.order_id for s in subs if s.order_id], timeout=120, store_id=store.id)
    time.sleep(1.0)  # let the last copies finish
    tally = account(stack, subs, store, finish=finish, check_captures=False)
    progress = {k.decode(): v for k, v in stack.r.hgetall("kirana:progress:orders").items()}
    both = sorted(w.name for w in pair if w.name in progress)
    queued = int(stack.r.llen("orders"))
    notes = [f"{2 * N} messages for {N} orders (half the pairs one task id, half two); workers that ran them: "
             f"{both}; left in the queue: {queued}",
             finish.note()]
    record(tally.result("duplicate delivery", finish.since(fault_at), notes=notes,
                        workers=both))

    assert len(both) == 2, f"both workers were meant to run copies: {progress}"
    assert tally.completed == N
    assert queued == 0
    check(tally)
