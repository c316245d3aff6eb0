"""After a case: count what became of every submission, from MongoDB and the sandbox's bank.

Every violation found is a finding, and `check` fails the case on any finding:
an order accepted and never final, one stuck until beat's sweep recovered it,
stock taken twice, a second capture, an event repeated, points applied twice,
a notification sent twice, a dead letter the case did not provoke. There is no
list of known bugs to excuse a finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kirana import db as collections
from kirana import orders
from tests.chaos.report import CaseResult
from tests.chaos.rig import FINAL, ChaosStack, Finish, Store, Submission

EXPECTED_EVENTS = {
    "cod": ["accepted", "processing", "confirmed"],
    "online": ["accepted", "processing", "reserved", "awaiting_payment", "confirmed"],
}

@dataclass
class Tally:
    submitted: int = 0
    accepted: int = 0
    completed: int = 0
    refused: int = 0
    stuck: int = 0
    errors: list[str] = field(default_factory=list)
    # Accepted (202) but not final, or not found at all.
    lost: list[str] = field(default_factory=list)
    # Orders stored behind a submit's last answer that was not 202 (a 503 says "try again with the
    # same key", so the order may have landed): each must still be final.
    ghosts: list[str] = field(default_factory=list)
    # Effects beyond one: units over-consumed, captures beyond one, repeated events.
    duplicated: int = 0
    findings: list[str] = field(default_factory=list)
    # Worth telling, not a violation (e.g. an order the designed safety net, beat's sweep, recovered).
    notes: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def find(self, text: str) -> None:
        self.findings.append(text)

    def result(self, fault: str, recovery_s: float | None, *, outage_s: float | None = None,
               notes: Iterable[str] = (), lost_extra: int = 0, **detail: Any) -> CaseResult:
        """The case's row of the table."""
        return CaseResult(fault, self.submitted, self.completed, len(self.lost) + lost_extra, self.duplicated,
                          recovery_s, refused=self.refused, errors=len(self.errors), ghosts=len(self.ghosts),
                          stuck=self.stuck,
                          outage_s=outage_s, notes=[*notes, *self.notes, *self.findings],
                          detail={"statuses": self.statuses, "errors": self.errors, **detail})


def check(tally: Tally) -> None:
    """Fail on any finding: lost, stuck, duplicated, or anything else the accounting saw."""
    assert tally.findings == [], tally.findings


def account(stack: ChaosStack, subs: list[Submission], store: Store, *, finish: Finish | None = None,
            check_captures: bool = True, expected_dead: Iterable[str] = ()) -> Tally:
    """Count what became of `subs`: every finding (lost, stuck, duplicated) fails the case."""
    tally = Tally(submitted=len(subs), stuck=len(finish.stuck) if finish else 0)
    accepted = [s for s in subs if s.order_id]
    tally.accepted = len(accepted)
    for sub in subs:
        if sub.refusals or sub.status == 503:
            tally.refused += 1
        if sub.status not in (202, 503):
            tally.errors.append(f"#{sub.n} {sub.status}: {(sub.error or '')[:200]}")
            tally.find(f"submit #{sub.n} answered {sub.status}: {(sub.error or '')[:200]}")
    in_store = {o["_id"]: o for o in stack.db[collections.ORDERS].find({"store_id": store.id})}
    _orders(tally, accepted, subs, in_store, finish.stuck if finish else {})
    _stock(tally, stack, store, in_store)
    _events(tally, stack, in_store)
    if check_captures:
        _captures(tally, stack, accepted, in_store)
    _points(tally, stack, in_store)
    _notifications(tally, stack, in_store)
    _dead_letters(tally, stack, set(expected_dead))
    return tally


def _points(tally: Tally, stack: ChaosStack, in_store: dict[str, Any]) -> None:
    """Each ledger entry applied once: every customer's balance is the sum of their ledger."""
    customers = {o["customer_id"] for o in in_store.values()}
    sums: Counter[str] = Counter()
    for entry in stack.db.loyalty_ledger.find({"customer_id": {"$in": sorted(customers)}},
                                             {"customer_id": 1, "points": 1}):
        sums[entry["customer_id"]] += int(entry["points"])
    for account in stack.db.loyalty_accounts.find({"_id": {"$in": sorted(customers)}}, {"balance": 1}):
        over = int(account.get("balance", 0)) - sums[account["_id"]]
        if over:
            tally.duplicated += abs(over)
            tally.find(f"customer {account['_id']}: balance {account.get('balance')} but ledger sums to "
                       f"{sums[account['_id']]}")


def _notifications(tally: Tally, stack: ChaosStack, in_store: dict[str, Any]) -> None:
    """Each notification handed to its provider once (its id is fixed per order, event and channel)."""
    customers = sorted({o["customer_id"] for o in in_store.values()})
    planned = {n["_id"] for n in stack.db.notifications.find({"user_id": {"$in": customers}}, {"key": 1})
               if str(n.get("key", "")).split(":", 1)[0] in in_store}
    sends: Counter[str] = Counter()
    for attempt in stack.db.notification_attempts.find({"notification_id": {"$in": sorted(planned)}, "ok": True},
                                                       {"notification_id": 1}):
        sends[attempt["notification_id"]] += 1
    for nid, n in sends.items():
        if n > 1:
            tally.duplicated += n - 1
            tally.find(f"notification {nid} sent {n} times")


def _dead_letters(tally: Tally, stack: ChaosStack, expected: set[str]) -> None:
    """Work that gave up for good (tasks/reliability.py): none is expected but what the case provokes."""
    for letter in stack.db.dead_letters.find({"task": {"$nin": sorted(expected)}}):
        tally.find(f"dead letter: {letter['task']}{tuple(letter.get('args') or ())} {letter.get('reason')} "
                   f"({letter.get('exc_type')}: {str(letter.get('message'))[:120]})")


def _orders(tally: Tally, accepted: list[Submission], subs: list[Submission], in_store: dict[str, Any],
            stuck: dict[str, str]) -> None:
    """Every 202 final; the orders beat's sweep had to recover, by where they were stuck; 503s stored nothing."""
    found = {s.order_id: in_store[s.order_id] for s in accepted if s.order_id in in_store}
    tally.statuses = dict(Counter(o["status"] for o in found.values()))
    for sub in accepted:
        order = found.get(sub.order_id)
        paid = f", {sub.pay_status}" if sub.pay_status and sub.pay_status != "verified" else ""
        if order is None or order["status"] not in FINAL:
            status = order["status"] if order else "missing"
            tally.lost.append(f"{sub.order_id} ({status}, {sub.method}{paid})")
            tally.find(f"accepted order {sub.order_id} never final ({status}, {sub.method}{paid})")
            continue
        tally.completed += 1
        was = stuck.get(sub.order_id or "")
        if was is not None:
            tally.find(f"{sub.order_id} ({sub.method}) stuck '{was}' until beat's sweep recovered it")
    # A submit whose last answer was not 202 may still have stored its order (a lost reply): the
    # client was told to try again with the same key. Such an order must still be processed.
    unanswered = {s.scoped_key for s in subs if s.status != 202}
    for order in in_store.values():
        if order["idempotency_key"] in unanswered:
            tally.ghosts.append(f"{order['_id']} ({order['status']})")
            if order["status"] not in FINAL:
                tally.lost.append(f"{order['_id']} ({order['status']}, stored behind a 503)")
                tally.find(f"order {order['_id']} stored behind its submit's last 503, never final "
                           f"({order['status']})")
        elif order["_id"] not in found and not order["idempotency_key"].startswith("auto:"):
            tally.find(f"order {order['_id']} ({order['status']}) stored, but no client was told of it")


def _stock(tally: Tally, stack: ChaosStack, store: Store, in_store: dict[str, Any]) -> None:
    """Per SKU: units gone from the shelf == units in confirmed orders + units held by unfinished ones."""
    confirmed = [o for o in in_store.values() if o["status"] == "confirmed"]
    unfinished = {i for i, o in in_store.items() if o["status"] not in FINAL}
    for product in stack.db[collections.PRODUCTS].find({"store_id": store.id}):
        sku = product["sku"]
        holds = product.get("holds") or {}
        sold = sum(line["qty"] for o in confirmed for line in o.get("lines", []) if line["sku"] == sku)
        held = sum(int(q) for order_id, q in holds.items() if order_id in unfinished)
        consumed = store.initial[sku] - int(product["stock"])
        over = consumed - sold - held
        stale = {order_id: int(q) for order_id, q in holds.items() if order_id not in unfinished}
        confirmed_ids = {o["_id"] for o in confirmed}
        on_confirmed = sum(q for order_id, q in stale.items() if order_id in confirmed_ids)
        if over > 0:
            tally.duplicated += over
            # Exactly the units held again for orders already confirmed (and settled): a second reservation.
            tally.find(f"{sku}: {consumed} units consumed, {sold} sold + {held} held: {over} over-consumed; "
                       f"holds left on finished orders {stale} ({on_confirmed} on confirmed orders)")
        elif over < 0:
            tally.find(f"{sku}: {consumed} units consumed, {sold} sold + {held} held (sold without stock)")
        elif stale:
            tally.find(f"{sku}: holds of finished orders left behind {stale}")
    for order in confirmed:
        wanted = {i["sku"]: i["qty"] for i in order["items"]}
        priced = {line["sku"]: line["qty"] for line in order.get("lines", [])}
        if wanted != priced:
            tally.find(f"{order['_id']}: lines {priced} differ from items {wanted}")


def _events(tally: Tally, stack: ChaosStack, in_store: dict[str, Any]) -> None:
    """Each status once, in the expected story."""
    for order in in_store.values():
        if order["status"] != "confirmed":
            continue
        story = [e["status"] for e in orders.history(order)]
        repeats = sum(n - 1 for n in Counter(story).values() if n > 1)
        tally.duplicated += repeats
        expected = EXPECTED_EVENTS["cod" if order["payment_method"] == "cod" else "online"]
        if story == expected:
            continue
        tally.find(f"{order['_id']} confirmed with events {story}, expected {expected}")


def _captures(tally: Tally, stack: ChaosStack, accepted: list[Submission], in_store: dict[str, Any]) -> None:
    """One capture per paid order, counted at the bank."""
    captures = stack.sandbox_stats()["captures"]
    for sub in accepted:
        if not sub.paid or sub.checkout is None:
            continue  # never paid: already counted as lost if it is not final
        n = int(captures.get(sub.checkout["razorpay_payment_id"], 0))
        if n > 1:
            tally.duplicated += n - 1
            tally.find(f"{sub.order_id}: {n} captures of {sub.checkout['razorpay_payment_id']}")
        elif n == 0 and in_store.get(sub.order_id or "", {}).get("status") == "confirmed":
            tally.find(f"{sub.order_id}: confirmed without a capture")
    paid = {s.checkout["razorpay_payment_id"] for s in accepted if s.checkout}
    strangers = {p: n for p, n in captures.items() if p not in paid}
    if strangers:
        tally.find(f"captures of payments no order was paid with: {strangers}")
