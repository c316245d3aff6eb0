"""A poison message (its task kills the worker running it) is dead-lettered at the cap; the queue keeps flowing."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from kirana import audit
from tests.chaos.accounting import account, check
from tests.chaos.rig import CHILD_ENV, ChaosStack, Load, Shopper, wait_final, wait_until

pytestmark = pytest.mark.chaos

CAP = int(CHILD_ENV["REDELIVERY_CAP"])
# Prefork with task_reject_on_worker_lost gives a dead child's message back at once: the
# cap is reached after CAP deaths and a fresh child each, well within this.
BOUND_S = 45.0


class Logins:
    """Shoppers logging in again and again from a thread: each login is an audit.record task."""

    def __init__(self, stack: ChaosStack, shoppers: list[Shopper]) -> None:
        self.stack = stack
        self.shoppers = shoppers
        self.at: list[float] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-logins", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            shopper = self.shoppers[len(self.at) % len(self.shoppers)]
            try:
                self.stack.login(shopper.email)
            except Exception as exc:  # counted: the case asserts none failed
                self.failed.append(repr(exc))
            else:
                self.at.append(time.monotonic())
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_poison_message_is_dead_lettered_and_audit_work_keeps_flowing(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack(pool_env={"audit": {"KIRANA_EXTRA_TASK_MODULES": "tests.chaos.poison"}})
    store = stack.make_store()
    shoppers = stack.shoppers(4)
    load = Load(stack, shoppers, store, n=200, rate=30.0).start()
    load.wait_answered(40, timeout=30)

    poison_id = stack.send("audit.poison", "chaos")
    fault_at = time.monotonic()
    # Ordinary audited work all along: logins, each an audit.record on the audit queue.
    logins = Logins(stack, shoppers)

    letter_id = f"dl_{poison_id}"
    took: float | None = None
    with contextlib.suppress(TimeoutError):  # recorded, then asserted below
        took = wait_until("the poison message dead-lettered at the cap", lambda: (stack.db.dead_letters.find_one(
            {"_id": letter_id, "reason": "redelivery_cap"}) is not None), timeout=BOUND_S, interval=0.1)
    # Logins go on after the dead letter, and are recorded too.
    time.sleep(2.0)
    logins.stop()
    actors = [s.user_id for s in shoppers]
    expected = len(shoppers) + len(logins.at)  # the first login of each shopper, then the stream

    def recorded() -> int:
        return stack.db[audit.AUDIT].count_documents({"action": "login.succeeded", "actor": {"$in": actors}})

    with contextlib.suppress(TimeoutError):  # counted, recorded and asserted below
        wait_until("every login audited", lambda: recorded() >= expected, timeout=30)
    audited = recorded()
    after_letter = [t for t in logins.at if took is not None and t - fault_at > took]
    letter = stack.db.dead_letters.find_one({"_id": letter_id}) or {}
    deliveries = int(stack.r.get(f"kirana:deliveries:{poison_id}:0") or 0)
    chain_break = audit.verify(stack.db)

    load.join()
    finish = wait_final(stack, load.accepted_ids, timeout=120, store_id=store.id)
    load.join_payments(timeout=10)
    tally = account(stack, load.subs, store, finish=finish, expected_dead=["audit.poison"])
    when = "never" if took is None else f"+{took:.1f}s"
    notes = [f"poison dead-lettered {when} after {deliveries} deliveries (cap {CAP}), "
             f"task {letter.get('task')}, reason {letter.get('reason')}, queue {letter.get('queue')}",
             f"logins audited {audited}/{expected} ({len(after_letter)} after the dead letter); "
             f"audit chain {'intact' if chain_break is None else f'BROKEN: {chain_break}'}"]
    record(tally.result("poison message", took, notes=notes, lost_extra=expected - audited,
                        letter={k: v for k, v in letter.items() if k != "created_at"}, deliveries=deliveries,
                        orders_final_s=finish.since(fault_at), sweeps=finish.note()))

    assert took is not None, f"no redelivery_cap dead letter within {BOUND_S:.0f}s: {letter}"
    assert letter.get("task") == "audit.poison" and letter.get("reason") == "redelivery_cap", letter
    assert letter.get("status") == "open"
    assert deliveries == CAP + 1, f"the poison was delivered {deliveries} times, the cap is {CAP}"
    assert logins.failed == []
    assert after_letter, "no login happened after the dead letter"
    assert audited == expected, f"{expected - audited} login(s) never reached the audit log"
    assert chain_break is None
    assert stack.live("audit"), "the audit worker's main process died"
    check(tally)
