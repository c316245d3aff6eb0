"""MongoDB stopped for a few seconds mid-load: the API answers 503 (never 500), tasks retry, all complete.

The fault: nx-27017 stopped (SIGTERM) and started again on the same port and
data directory. KIRANA_CHAOS_MONGO_FAULT=sigstop freezes it instead
(SIGSTOP/SIGCONT): a hung server rather than a gone one.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.chaos.accounting import account, check
from tests.chaos.rig import Load, wait_final

pytestmark = pytest.mark.chaos

DOWN_S = 5.0
FAULT = os.environ.get("KIRANA_CHAOS_MONGO_FAULT", "restart")


def test_a_mongodb_outage_mid_load_answers_503_and_completes_every_accepted_order(make_stack, record) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack()
    store = stack.make_store()
    load = Load(stack, stack.shoppers(4), store, n=200, rate=25.0).start()

    load.wait_answered(70, timeout=30)
    fault_at = time.monotonic()
    if FAULT == "sigstop":
        stack.mongo.signal(signal.SIGSTOP)
        time.sleep(DOWN_S)
        stack.mongo.signal(signal.SIGCONT)
    else:
        stack.mongo.stop()
        time.sleep(DOWN_S)
        stack.mongo.start()
    outage = time.monotonic() - fault_at
    load.join()
    finish = wait_final(stack, load.accepted_ids, timeout=150, store_id=store.id)
    load.join_payments(timeout=10)
    tally = account(stack, load.subs, store, finish=finish)
    during = [s for s in load.subs if s.answered_at and fault_at <= s.answered_at <= fault_at + outage]
    dead = list(stack.db.dead_letters.find({}, {"task": 1, "reason": 1, "exc_type": 1, "args": 1}))
    notes = [f"fault: {FAULT}; {len(during)} submits answered during the outage: "
             f"{sum(s.status == 202 for s in during)}x202, {sum(s.status == 503 for s in during)}x503, "
             f"{sum(s.status not in (202, 503) for s in during)}x other; dead letters: {len(dead)}", finish.note()]
    record(tally.result("mongodb outage", finish.since(fault_at), outage_s=outage,
                        notes=notes, dead_letters=dead))

    assert tally.errors == [], f"answers other than 202/503 (a 500 is a failure): {tally.errors}"
    assert tally.refused > 0, "no submit met the outage: the fault tested nothing"
    check(tally)
