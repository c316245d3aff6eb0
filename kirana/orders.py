"""Orders: what a customer asked for, its life as an explicit state machine.

An order moves only along `TRANSITIONS`, and every move is one
compare-and-set update whose filter holds the status it expects, so a step
that runs twice (a redelivered task, a duplicate message) finds nothing to
change the second time. Every move is also recorded as an order event.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import db as collections
from kirana.clock import now_ms, utcnow
from kirana.ids import new_id


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


# No way out of these.
TERMINAL = frozenset({Status.REJECTED, Status.EXPIRED, Status.CANCELLED, Status.REFUNDED, Status.DELIVERED})
# An order that still holds stock for a payment that has not come.
UNPAID = frozenset({Status.RESERVED, Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED})

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.ACCEPTED: frozenset({Status.PROCESSING, Status.REJECTED}),
    Status.PROCESSING: frozenset({Status.CONFIRMED, Status.REJECTED, Status.RESERVED}),
    Status.RESERVED: frozenset({Status.AWAITING_PAYMENT, Status.CONFIRMED, Status.EXPIRED, Status.CANCELLED}),
    Status.AWAITING_PAYMENT: frozenset({Status.CONFIRMED, Status.PAYMENT_FAILED, Status.EXPIRED, Status.CANCELLED}),
    # A failed payment may be retried (a new attempt), or succeed late (UPI).
    Status.PAYMENT_FAILED: frozenset({Status.RESERVED, Status.CONFIRMED, Status.EXPIRED, Status.CANCELLED}),
    Status.CONFIRMED: frozenset({Status.CANCELLED, Status.REFUND_PENDING, Status.OUT_FOR_DELIVERY}),
    Status.OUT_FOR_DELIVERY: frozenset({Status.DELIVERED}),
    Status.DELIVERED: frozenset(),
    Status.REFUND_PENDING: frozenset({Status.REFUNDED}),
    Status.REJECTED: frozenset(),
    Status.EXPIRED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.REFUNDED: frozenset(),
}

# Position of each status in an order's life, to keep events in order when
# two land in the same millisecond.
_SEQ = {
    Status.ACCEPTED: 0, Status.PROCESSING: 1, Status.RESERVED: 2, Status.AWAITING_PAYMENT: 3,
    Status.PAYMENT_FAILED: 4, Status.CONFIRMED: 5, Status.REJECTED: 5, Status.EXPIRED: 6, Status.CANCELLED: 6,
    Status.REFUND_PENDING: 7, Status.REFUNDED: 8, Status.OUT_FOR_DELIVERY: 7, Status.DELIVERED: 8,
}


class RejectReason(StrEnum):
    UNKNOWN_STORE = "unknown_store"
    UNKNOWN_SKU = "unknown_sku"
    OUT_OF_STOCK = "out_of_stock"
    UNSUPPORTED_PAYMENT = "unsupported_payment_method"
    # Loyalty points redeemed at checkout (kirana.loyalty).
    INSUFFICIENT_POINTS = "insufficient_points"
    POINTS_EXCEED_TOTAL = "points_exceed_total"


class PaymentMethod(StrEnum):
    COD = "cod"
    UPI = "upi"
    CARD = "card"
    NETBANKING = "netbanking"
    # A card the customer saved at Razorpay; `token_id` names it.
    TOKEN = "token"


@dataclass(frozen=True)
class OrderItem:
    sku: str
    qty: int


@dataclass(frozen=True)
class NewOrder:
    """A validated request for an order, before it is stored."""

    customer_id: str
    store_id: str
    items: tuple[OrderItem, ...]
    payment_method: PaymentMethod
    token_id: str | None = None
    # Loyalty points to take off the total (kirana.loyalty), debited while the order is processed.
    redeem_points: int = 0

    def fingerprint(self) -> str:
        """Stable hash of the request, to tell a retry from a different order."""
        fields = asdict(self)
        if not fields["redeem_points"]:
            del fields["redeem_points"]  # orders without points hash as they did before points existed
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class OrderError(Exception):
    """Base of the order errors the API turns into problem responses."""


class OrderNotFound(OrderError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order with id {order_id!r}")
        self.order_id = order_id


class IdempotencyConflict(OrderError):
    def __init__(self, key: str, order_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for order {order_id} with a different body"
        )
        self.key = key
        self.order_id = order_id


class IllegalTransition(OrderError):
    pass


Publisher = Callable[[str, dict[str, Any]], None]


def check_transition(current: Status, target: Status) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"an order cannot go from {current} to {target}")


def record_event(
    db: Database,
    order_id: str,
    status: Status,
    at_ms: int,
    *,
    detail: Mapping[str, Any] | None = None,
    publish: Publisher | None = None,
    attempt: int | None = None,
) -> None:
    """Insert the event for reaching `status`; a second insert is a no-op.

    The event id is (order, status[, payment attempt]): a status is reached
    at most once per attempt, so a replayed step cannot record it twice.
    """
    event = {
        "_id": f"{order_id}:{status}" + (f":{attempt}" if attempt else ""),
        "order_id": order_id,
        "status": str(status),
        "seq": _SEQ[status],
        "at": utcnow(),
        "at_ms": at_ms,
        **({"detail": dict(detail)} if detail else {}),
    }
    try:
        db[collections.ORDER_EVENTS].insert_one(event)
    except DuplicateKeyError:
        return
    if publish is not None:
        publish(order_id, {"order_id": order_id, "status": str(status), "at_ms": at_ms})


def place(
    db: Database,
    new: NewOrder,
    *,
    idempotency_key: str | None = None,
    publish: Publisher | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store `new` as an accepted order; return (order, created).

    With an idempotency key, the same key and body give back the first order
    (created=False) and a different body raises IdempotencyConflict. The key
    field is unique and always present (a keyless order uses its own id), so
    one insert decides the race between two retries.
    """
    order_id = new_id("ord")
    at_ms = now_ms()
    scoped_key = f"{new.customer_id}:{idempotency_key}" if idempotency_key else f"auto:{order_id}"
    fingerprint = new.fingerprint()
    # The event goes first: an event without its order is invisible, while
    # an order without its "accepted" event would have a hole in its story.
    record_event(db, order_id, Status.ACCEPTED, at_ms)
    doc = {
        "_id": order_id,
        "customer_id": new.customer_id,
        "store_id": new.store_id,
        "items": [asdict(item) for item in new.items],
        "payment_method": str(new.payment_method),
        **({"token_id": new.token_id} if new.token_id else {}),
        **({"redeem_points": new.redeem_points} if new.redeem_points else {}),
        "status": str(Status.ACCEPTED),
        "idempotency_key": scoped_key,
        "request_fingerprint": fingerprint,
        "created_at": utcnow(),
        "created_at_ms": at_ms,
        "updated_at_ms": at_ms,
    }
    try:
        db[collections.ORDERS].insert_one(doc)
    except DuplicateKeyError:
        db[collections.ORDER_EVENTS].delete_one({"_id": f"{order_id}:{Status.ACCEPTED}"})
        existing = db[collections.ORDERS].find_one({"idempotency_key": scoped_key})
        if existing is None:  # the first holder was withdrawn in between
            return place(db, new, idempotency_key=idempotency_key, publish=publish)
        if existing["request_fingerprint"] != fingerprint:
            raise IdempotencyConflict(idempotency_key or "", existing["_id"]) from None
        return existing, False
    if publish is not None:
        publish(order_id, {"order_id": order_id, "status": str(Status.ACCEPTED), "at_ms": at_ms})
    return doc, True


_PER_ATTEMPT = frozenset({Status.RESERVED, Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED})


def ensure_current_event(db: Database, order: Mapping[str, Any]) -> None:
    """Record the event of the order's current status if a failed run moved it without one (idempotent)."""
    status = Status(order["status"])
    attempt = int(order.get("payment_attempt", 1)) if status in _PER_ATTEMPT else None
    record_event(db, order["_id"], status, int(order.get("updated_at_ms", now_ms())), attempt=attempt)


def withdraw(db: Database, order_id: str) -> bool:
    """Remove an order that was accepted but could not be enqueued.

    Only an untouched "accepted" order is removed, so the client's retry with
    the same Idempotency-Key starts afresh and nothing is left half-written.
    """
    deleted = db[collections.ORDERS].delete_one({"_id": order_id, "status": str(Status.ACCEPTED)})
    if deleted.deleted_count:
        db[collections.ORDER_EVENTS].delete_many({"order_id": order_id})
    return bool(deleted.deleted_count)


def move(
    db: Database,
    order_id: str,
    expected: Status | frozenset[Status],
    target: Status,
    *,
    guard: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    unset: tuple[str, ...] = (),
    detail: Mapping[str, Any] | None = None,
    publish: Publisher | None = None,
    attempt: int | None = None,
) -> dict[str, Any] | None:
    """Compare-and-set `expected` -> `target`; None when the order was not in `expected`.

    `expected` may be a set of statuses the move is allowed from. A move that
    finds the order at `target` already makes sure that status has its event:
    the run that moved it may have stopped before writing it (MongoDB failed,
    the worker died), and its retry or redelivery comes through here again.
    """
    froms = expected if isinstance(expected, frozenset) else frozenset({expected})
    for current in froms:
        check_transition(current, target)
    status_filter: Any = str(next(iter(froms))) if len(froms) == 1 else {"$in": sorted(str(s) for s in froms)}
    at_ms = now_ms()
    update: dict[str, Any] = {"$set": {"status": str(target), "updated_at_ms": at_ms, **(fields or {})}}
    if unset:
        update["$unset"] = dict.fromkeys(unset, "")
    moved = db[collections.ORDERS].find_one_and_update(
        {"_id": order_id, "status": status_filter, **(guard or {})},
        update,
        return_document=ReturnDocument.AFTER,
    )
    if moved is not None:
        record_event(db, order_id, target, at_ms, detail=detail, publish=publish, attempt=attempt)
        return moved
    # Not moved. At `target` already (for this attempt): write the event as the run that
    # moved it would have (same id, time and detail), so racing it changes nothing.
    found = db[collections.ORDERS].find_one({"_id": order_id}, {"status": 1, "payment_attempt": 1, "updated_at_ms": 1})
    if (found is not None and found["status"] == str(target)
            and (attempt is None or found.get("payment_attempt") == attempt)):
        record_event(db, order_id, target, int(found["updated_at_ms"]), detail=detail, attempt=attempt)
    return None


def get(db: Database, order_id: str) -> dict[str, Any]:
    order = db[collections.ORDERS].find_one({"_id": order_id})
    if order is None:
        raise OrderNotFound(order_id)
    return order


def events(db: Database, order_id: str) -> list[dict[str, Any]]:
    found = db[collections.ORDER_EVENTS].find({"order_id": order_id})
    return sorted(found, key=lambda e: (e["at_ms"], e["seq"]))


# Reads of an order and its events until they agree (see with_events), a moment apart:
# on a busy machine the worker between its move and its event may be off the CPU a while.
CONSISTENT_READS = 3
CONSISTENT_PAUSE_S = 0.01


def with_events(db: Database, order_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The order and its events as one story, for showing them together.

    Events are read before the order, so they never run ahead of its status. A status
    change lands in the order a moment before its event (`move`, then `record_event`):
    when the last event is not the order's status, both are read again, a few times.
    """
    for read in range(CONSISTENT_READS):
        if read:
            time.sleep(CONSISTENT_PAUSE_S)
        order_events = events(db, order_id)
        order = get(db, order_id)
        if not order_events or order_events[-1]["status"] == order["status"]:
            break
    return order, order_events


def view(order: Mapping[str, Any], order_events: list[dict[str, Any]]) -> dict[str, Any]:
    """The order as the app sees it: no internal bookkeeping fields."""
    shown: dict[str, Any] = {
        "id": order["_id"],
        "status": order["status"],
        "customer_id": order["customer_id"],
        "store_id": order["store_id"],
        "payment_method": order["payment_method"],
        "items": order["items"],
        "lines": order.get("lines", []),
        "total_paise": order.get("total_paise"),
        "created_at_ms": order["created_at_ms"],
        "updated_at_ms": order["updated_at_ms"],
        "events": [
            {"status": e["status"], "at_ms": e["at_ms"], **({"detail": e["detail"]} if "detail" in e else {})}
            for e in order_events
        ],
    }
    if order.get("redeem_points"):
        shown["redeem_points"] = order["redeem_points"]
        shown["subtotal_paise"] = order.get("subtotal_paise")
        shown["discount_paise"] = order.get("discount_paise")
    if order.get("reject_reason"):
        shown["reject_reason"] = order["reject_reason"]
        shown["reject_detail"] = order.get("reject_detail")
    if order.get("payment"):
        # What the app's checkout needs: the gateway order, key id and amount.
        shown["payment"] = dict(order["payment"])
    if order.get("pay_by_ms"):
        shown["pay_by_ms"] = order["pay_by_ms"]
    if order.get("rider_id"):
        shown["rider_id"] = order["rider_id"]
    return shown


def stuck(db: Database, older_than_ms: int, limit: int) -> list[str]:
    """Ids of orders still accepted or processing since before `older_than_ms`."""
    found = (
        db[collections.ORDERS]
        .find(
            {
                "status": {"$in": [str(Status.ACCEPTED), str(Status.PROCESSING)]},
                "created_at_ms": {"$lt": older_than_ms},
            },
            {"_id": 1},
        )
        .sort("created_at_ms", 1)
        .limit(limit)
    )
    return [doc["_id"] for doc in found]
