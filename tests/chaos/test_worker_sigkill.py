"""The orders pool SIGKILLed mid-load: its unacked tasks come back, nothing is done twice.

A killed worker's unacked task returns only after the orders queue's visibility
timeout plus one restore sweep (~65 s, tasks/queues.py), and most of that is
idle waiting. So the case runs in two steps: the fault is injected before the
other cases (chaos_first), its recovery is counted after them (chaos_last),
and the wait overlaps them. Recovery times come from the orders' own
timestamps and kombu's unacked hash, watched in the background, so the other
cases running meanwhile do not blur them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kirana.clock import now_ms
from tasks.queues import DELIVERY, RESTORE_INTERVAL_S, Queue
from tests.chaos import report
from tests.chaos.accounting import account, check
from tests.chaos.rig import FINAL, ChaosStack, Load, Store, Worker, wait_final, wait_until

pytestmark = pytest.mark.chaos

ORDERS = DELIVERY[Queue.ORDERS]
# A dead worker's task is back within the visibility timeout plus one restore sweep.
BOUND_S = ORDERS.visibility_timeout_s + RESTORE_INTERVAL_S
UNACKED = f"unacked:{Queue.ORDERS.value}"


@dataclass
class Killed:
    stack: ChaosStack
    store: Store
    load: Load
    fault_at: float  # monotonic
    fault_ms: int  # epoch, to compare with the orders' updated_at_ms
    # delivery tag -> order id of what the dead worker had taken and not acked
    in_flight: dict[str, str]
    in_flight_status: dict[str, str]
    victim: Worker
    restored_at: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        """Note when each of the dead worker's messages leaves the unacked hash (kombu restored it)."""
        while not self.stop.is_set() and len(self.restored_at) < len(self.in_flight):
            with contextlib.suppress(Exception):
                still = set(self.stack.r.hkeys(UNACKED))
                for tag in self.in_flight:
                    if tag.encode() not in still:
                        self.restored_at.setdefault(tag, time.monotonic() - self.fault_at)
            self.stop.wait(0.25)


def _unacked_orders(stack: ChaosStack) -> dict[str, str]:
    """delivery tag -> order id of every orders.process message taken and not acked (kombu's unacked hash)."""
    found = {}
    for tag, raw in stack.r.hgetall(UNACKED).items():
        payload = json.loads(raw)[0]
        if payload["headers"].get("task") == "orders.process":
            found[tag.decode()] = json.loads(base64.b64decode(payload["body"]))[0][0]
    return found


@pytest.fixture(scope="session")
def killed_orders_pool() -> Iterator[Killed]:
    stack = ChaosStack(report.chaos_dir() / "worker_sigkill").__enter__()
    killed = None
    try:
        store = stack.make_store()
        load = Load(stack, stack.shoppers(4), store, n=200, rate=25.0).start()
        # Mid-load: the pool busy with the orders coming in.
        load.wait_answered(70, timeout=30)
        wait_until("the orders pool confirming", lambda: stack.db.orders.count_documents(
            {"store_id": store.id, "status": "confirmed"}) >= 20, timeout=30)
        victim = stack.live("orders")[0]
        # Kill it with work in hand: freeze the worker's process group (nothing it holds can be
        # acked then), look at what it holds, and kill it only if that is something. A fast pool
        # is idle between orders often enough that a blind kill can catch it empty-handed.
        deadline = time.monotonic() + 20
        while True:
            victim.server.signal(signal.SIGSTOP)
            in_flight = _unacked_orders(stack)
            if in_flight or time.monotonic() > deadline:
                break
            victim.server.signal(signal.SIGCONT)
            time.sleep(0.02)
        fault_at, fault_ms = time.monotonic(), now_ms()
        victim.kill()  # SIGKILL ends stopped processes too
        # What the dead worker held: taken from the queue, never acked.
        statuses = {o["_id"]: o["status"] for o in stack.db.orders.find({"_id": {"$in": list(in_flight.values())}})}
        # A supervisor starts a fresh worker of the pool.
        fresh = stack.start_worker("orders")
        killed = Killed(stack, store, load, fault_at, fault_ms, in_flight, statuses, victim)
        threading.Thread(target=killed.watch, name="chaos-unacked-watch", daemon=True).start()
        stack.wait_alive([fresh])
        load.join()
        yield killed
    finally:
        if killed is not None:
            killed.stop.set()
        stack.stop()


@pytest.mark.chaos_first
def test_the_orders_pool_is_sigkilled_with_tasks_in_hand(killed_orders_pool: Killed) -> None:
    killed = killed_orders_pool
    assert killed.in_flight, "the worker was killed with nothing in hand: the fault tested nothing"
    assert killed.victim.server.proc is not None and killed.victim.server.proc.poll() is not None
    assert killed.stack.live("orders"), "no fresh orders worker"


@pytest.mark.chaos_last
def test_after_the_sigkill_every_order_is_final_and_nothing_happened_twice(killed_orders_pool: Killed,
                                                                           record) -> None:  # type: ignore[no-untyped-def]
    killed = killed_orders_pool
    stack, load = killed.stack, killed.load
    # First the dead worker's messages back (within the bound): one it held may be about an order
    # that is already final, its last steps (the stock holds settled) still to run on redelivery.
    restore_by = killed.fault_at + BOUND_S + 15
    while len(killed.restored_at) < len(killed.in_flight) and time.monotonic() < restore_by:
        time.sleep(0.25)
    finish = wait_final(stack, load.accepted_ids, store_id=killed.store.id,
                        timeout=max(40.0, BOUND_S + 100 - (time.monotonic() - killed.fault_at)))
    load.join_payments(timeout=10)
    tally = account(stack, load.subs, killed.store, finish=finish)
    final_ms = {o["_id"]: o["updated_at_ms"] for o in stack.db.orders.find(
        {"_id": {"$in": load.accepted_ids}, "status": {"$in": list(FINAL)}}, {"updated_at_ms": 1})}
    recovery = None if len(final_ms) < len(load.accepted_ids) else (max(final_ms.values()) - killed.fault_ms) / 1000
    in_flight_final = {oid: (final_ms[oid] - killed.fault_ms) / 1000 for oid in killed.in_flight.values()
                       if oid in final_ms}

    def story(tag: str, oid: str) -> str:
        final = in_flight_final.get(oid)
        when = "never final" if final is None else "final before the kill" if final <= 0 else f"final +{final:.1f}s"
        restored = killed.restored_at.get(tag)
        return (f"{oid} ({killed.in_flight_status.get(oid)} at the kill) "
                f"{'never restored' if restored is None else f'restored +{restored:.1f}s'}, {when}")

    notes = [
        f"{len(killed.in_flight)} task(s) unacked by the killed worker: "
        + "; ".join(story(tag, oid) for tag, oid in killed.in_flight.items()),
        f"the killed worker's messages come back by kombu's unacked restore (visibility_timeout "
        f"{ORDERS.visibility_timeout_s}s + restore interval {RESTORE_INTERVAL_S}s = bound {BOUND_S}s); the wait "
        f"overlapped the other cases; {finish.note()}",
    ]
    # Taken by the frozen worker's BLMOVE and never written down as unacked (kombu's BRPOP window):
    # a live worker moves the dead one's in-flight list back when its lease lapses (tasks/broker.py).
    rescued = sum(int(m.group(1)) for log in stack.run_dir.glob("worker-orders-*.log")
                  for m in re.finditer(r"moved (\d+) message\(s\) of orders back from the in-flight list",
                                       log.read_text(errors="replace")))
    notes.append(f"{rescued} message(s) the killed worker had taken but not yet written down as unacked, "
                 f"moved back from its in-flight list when its lease lapsed")
    for oid in killed.in_flight.values():
        took = in_flight_final.get(oid)
        if took is None or took > BOUND_S + 10:
            # Beyond the bound: its restored delivery did not finish it (a lease still live, say).
            tally.find(f"the killed worker's {oid} final {'never' if took is None else f'+{took:.1f}s'}, over the "
                       f"bound of ~{BOUND_S}s (stuck {finish.stuck.get(oid, '-')})")
    record(tally.result("worker SIGKILL", recovery, notes=notes, in_flight=killed.in_flight,
                        in_flight_status=killed.in_flight_status, restored_at_s=killed.restored_at,
                        in_flight_final_s=in_flight_final))
    stack.stop()

    assert killed.in_flight
    assert len(killed.restored_at) == len(killed.in_flight), "a killed worker's message never left the unacked hash"
    assert tally.refused == 0
    check(tally)
