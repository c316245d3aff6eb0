"""Faults at the seams of the order pipeline, injected where they hurt (tasks/faults.py), under load.

- A worker SIGKILLed between a move's write and its dispatch: the follow-ups are recorded with the
  move, so the redelivered task or the dispatch sweep sends them; nothing is lost or done twice.
- The order's insert lands and its reply is lost: the API answers 503 ("try again with the same
  Idempotency-Key"), the client does, and gets the same order, which is processed once.
- Every follow-up dispatched twice (a publish retried after a lost reply): each has one effect.
"""

from __future__ import annotations

import time

import pytest

from tasks import faults
from tests.chaos.accounting import Tally, account, check
from tests.chaos.rig import POOLS, ChaosStack, Finish, Load, wait_final

pytestmark = pytest.mark.chaos


def _orders_through(stack: ChaosStack) -> tuple[Load, Finish, Tally, float]:
    """150 orders (cash, UPI, card) at 25/s, until all are final; what became of them."""
    store = stack.make_store()
    load = Load(stack, stack.shoppers(4), store, n=150, rate=25.0).start()
    started = time.monotonic()
    load.join()
    finish = wait_final(stack, load.accepted_ids, timeout=150, store_id=store.id)
    load.join_payments(timeout=10)
    return load, finish, account(stack, load.subs, store, finish=finish), started


def test_a_worker_killed_between_a_moves_write_and_its_dispatch_loses_nothing(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack(pool_env={"orders": {"KIRANA_FAULTS": f"{faults.KILL_BEFORE_DISPATCH}=0.1"}})
    _, finish, tally, started = _orders_through(stack)
    logs = "".join(p.read_text(errors="replace") for p in stack.run_dir.glob("worker-orders-*.log"))
    kills = logs.count("signal 9")
    record(tally.result("killed before dispatch", finish.since(started),
                        notes=[f"{kills} orders worker process(es) SIGKILLed between a write and its dispatch "
                               f"(p=0.1 per dispatch, first deliveries only)", finish.note()]))

    assert kills > 0, "the fault point never fired: the case tested nothing"
    assert tally.errors == [] and tally.refused == 0, tally.errors
    check(tally)


def test_an_insert_whose_reply_is_lost_answers_503_and_the_retry_gets_the_same_order(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack(KIRANA_FAULTS=f"{faults.LOSE_INSERT_REPLY}=0.3")
    load, finish, tally, started = _orders_through(stack)
    retried = [s for s in load.subs if s.refusals]
    customers = sorted({s.shopper.user_id for s in load.subs})
    stored = {o["idempotency_key"]: o["_id"] for o in stack.db.orders.find({"customer_id": {"$in": customers}})}
    replayed_same = sum(stored.get(s.scoped_key) == s.order_id for s in retried)
    record(tally.result("insert reply lost", finish.since(started),
                        notes=[f"{len(retried)} submits answered 503 after their insert landed (p=0.3), retried "
                               f"with the same key: {replayed_same} got the order their first try stored",
                               finish.note()]))

    assert retried, "the fault point never fired: the case tested nothing"
    assert all(s.status == 202 for s in load.subs), "every submit ends accepted once retried"
    assert replayed_same == len(retried), "a retry with the same key gets the same order"
    assert len(stored) == len(load.subs), "one order per key"
    check(tally)


def test_every_follow_up_dispatched_twice_has_one_effect(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    # With the pools whose effects are counted: notifications sent (to the console providers: each send
    # is an attempt stored in MongoDB), points applied, the index marks.
    stack = make_stack(pools=(*POOLS, "notifications", "leaderboards", "search"),
                       KIRANA_FAULTS=f"{faults.DISPATCH_TWICE}=1", EMAIL_PROVIDER="console", SMS_PROVIDER="console",
                       PUSH_PROVIDER="console")
    load, finish, tally, started = _orders_through(stack)
    customers = sorted({s.shopper.user_id for s in load.subs})
    planned = stack.db.notifications.count_documents({"user_id": {"$in": customers}})
    sent = stack.db.notification_attempts.count_documents({"user_id": {"$in": customers}, "ok": True})
    entries = stack.db.loyalty_ledger.count_documents({"customer_id": {"$in": customers}})
    record(tally.result("follow-ups sent twice", finish.since(started),
                        notes=[f"every follow-up (processing, gateway order, loyalty, notifications) published "
                               f"twice under its one task id; {planned} notifications planned, {sent} sent; "
                               f"{entries} loyalty entries", finish.note()]))

    assert planned > 0 and sent > 0 and entries > 0, "the counted effects happened at all"
    assert tally.errors == [] and tally.refused == 0, tally.errors
    check(tally)
