"""What happens when an order becomes X: the one table of moves and the follow-up work each records.

Every row is a move an order may make (from -> to), the guard its write carries
beyond the expected status, and the follow-ups ("intents") the move records in
the same single-document update as the status and its event (kirana.orders.move).
A dispatcher (tasks/dispatch.py) turns recorded intents into tasks, each with a
deterministic id (`<order id>:<intent name>`), and marks them sent after the
publish; a sweep sends what a crash left unsent. Every follow-up task is
idempotent, so a follow-up sent twice has one effect.

Intents name their task as a string: the domain knows no Celery.

>>> [i.task for i in follow_ups("ord_1", row(frozenset({Status.PROCESSING}), Status.CONFIRMED)).values()]
['live.order_update', 'leaderboards.sync_order', 'search.index_dirty', 'notifications.order_event']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    ACCEPTED = "accepted"
    PROCESSING = "processing"
    # Stock held and priced; a payment order is being opened at the gateway.
    RESERVED = "reserved"
    AWAITING_PAYMENT = "awaiting_payment"
    PAYMENT_FAILED = "payment_failed"
    CONFIRMED = "confirmed"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


PROCESS = "orders.process"
OPEN_GATEWAY_ORDER = "payments.create_order"
REFUND = "payments.refund"
NOTIFY = "notifications.order_event"
LOYALTY = "leaderboards.sync_order"
# Coalesced by the dispatcher: at most one indexer run waits in the queue (tasks/search.py).
SEARCH = "search.index_dirty"
# Not a task: the dispatcher publishes it on the order's live channel (Redis pub/sub, for the
# apps' WebSockets and store analytics) in one pipelined round trip.
LIVE = "live.order_update"
# Follow-ups the dispatcher does itself rather than send as tasks.
INLINE = frozenset({LIVE})


@dataclass(frozen=True)
class Intent:
    """One follow-up: the task to run and its arguments (ids only; the task re-reads)."""

    task: str
    args: tuple[Any, ...]

    def stored(self, at_ms: int) -> dict[str, Any]:
        return {"task": self.task, "args": list(self.args), "at_ms": at_ms}


@dataclass(frozen=True)
class Move:
    froms: frozenset[Status]
    to: Status
    # What the write's filter holds beyond the expected status (for the reader; the caller passes it).
    guard: str
    # Kinds of follow-up: "process", "gateway_order", "refund", "loyalty", "search", "notify:<event>".
    follow_ups: tuple[str, ...] = ()


S = Status
UNPAID = frozenset({S.RESERVED, S.AWAITING_PAYMENT, S.PAYMENT_FAILED})

# The order's life. An order is placed "accepted" (kirana.orders.place records PLACED's follow-ups).
TABLE: tuple[Move, ...] = (
    Move(frozenset({S.ACCEPTED}), S.PROCESSING, "claim token and lease (a run of orders.process)"),
    Move(frozenset({S.ACCEPTED, S.PROCESSING}), S.REJECTED, "claim token",
         ("loyalty", "search", "notify:order_rejected")),
    Move(frozenset({S.PROCESSING}), S.CONFIRMED, "claim token (cash on delivery)",
         ("loyalty", "search", "notify:order_confirmed")),
    Move(frozenset({S.PROCESSING}), S.RESERVED, "claim token (paid online: stock held, to be paid)",
         ("gateway_order", "search")),
    Move(frozenset({S.PAYMENT_FAILED}), S.RESERVED, "payment attempt (the customer pays again)", ("gateway_order",)),
    Move(frozenset({S.RESERVED}), S.AWAITING_PAYMENT, "payment attempt (its gateway order is open)"),
    Move(frozenset({S.AWAITING_PAYMENT}), S.PAYMENT_FAILED, "payment attempt", ("notify:payment_failed",)),
    Move(UNPAID, S.CONFIRMED, "none (the captured payment's id is set with it)",
         ("loyalty", "search", "notify:order_confirmed")),
    Move(UNPAID, S.EXPIRED, "pay_by_ms passed", ("loyalty", "search")),
    Move(UNPAID, S.CANCELLED, "none", ("loyalty", "search")),
    Move(frozenset({S.CONFIRMED}), S.CANCELLED, "none (unpaid: cash on delivery)", ("loyalty", "search")),
    Move(frozenset({S.CONFIRMED}), S.REFUND_PENDING, "none (paid: the refund follows)",
         ("refund", "loyalty", "search")),
    Move(frozenset({S.REFUND_PENDING}), S.REFUNDED, "the paid payment's id", ("loyalty", "notify:refund_processed")),
    Move(frozenset({S.CONFIRMED}), S.OUT_FOR_DELIVERY, "rider assigned, the rider's own delivery",
         ("notify:order_out_for_delivery",)),
    Move(frozenset({S.OUT_FOR_DELIVERY}), S.DELIVERED, "the rider's own delivery", ("notify:order_delivered",)),
)
# What placing an order records with it (the insert is its one write).
PLACED: tuple[str, ...] = ("process", "notify:order_accepted")

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    status: frozenset(m.to for m in TABLE if status in m.froms) for status in Status
}


def row(froms: frozenset[Status], to: Status) -> Move | None:
    """The table's move from any of `froms` to `to`, or None when the table has no such move."""
    return next((m for m in TABLE if m.to == to and froms <= m.froms), None)


def follow_ups(order_id: str, move: Move | None, *, attempt: int | None = None,
               detail: Mapping[str, Any] | None = None, at_ms: int = 0) -> dict[str, Intent]:
    """The intents `move` records (None: placing the order), by their name within the order.

    A name is fixed per (kind, status, payment attempt), so a replayed move records the same
    intent again rather than a second one, and its task id is the same. Every move also
    records its live update (status and time), which the apps' sockets show.
    """
    kinds = PLACED if move is None else move.follow_ups
    status = str(S.ACCEPTED if move is None else move.to)
    suffix = f"-{attempt}" if attempt else ""
    detail = detail or {}
    found: dict[str, Intent] = {f"live-{status}{suffix}": Intent(LIVE, (order_id, status, at_ms))}
    for kind in kinds:
        if kind == "process":
            found["process"] = Intent(PROCESS, (order_id,))
        elif kind == "gateway_order":
            found[f"gateway_order{suffix}"] = Intent(OPEN_GATEWAY_ORDER, (order_id, attempt or 1))
        elif kind == "refund":
            found["refund"] = Intent(REFUND, (detail["payment_id"],))
        elif kind == "loyalty":
            found[f"loyalty-{status}"] = Intent(LOYALTY, (order_id,))
        elif kind == "search":
            found[f"search-{status}{suffix}"] = Intent(SEARCH, ())
        elif kind.startswith("notify:"):
            event = kind.split(":", 1)[1]
            params: dict[str, Any] = {}
            if event == "order_rejected":
                params["reason"] = str(detail.get("reason") or "unknown")
            if event == "payment_failed":
                params["attempt"] = str(detail.get("payment_id") or "")
            found[f"notify-{event}{suffix}"] = Intent(NOTIFY, (order_id, event, params))
        else:  # pragma: no cover - the table above is the only source of kinds
            raise ValueError(f"unknown follow-up kind {kind!r}")
    return found
