"""Orders: what a customer asked for, its life as an explicit state machine.

An order moves only along `TRANSITIONS`, and every move is one
compare-and-set update whose filter holds the status it expects, so a step
that runs twice (a redelivered task, a duplicate message) finds nothing to
change the second time. The same update records the move as an event in the
order's `history` (a sub-document per status reached, `$set` by key, never a
`$push`: docs/mongodb-subset.md), so an order and its story cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import db as collections
from kirana import transitions
from kirana.clock import now_ms, utcnow
from kirana.ids import new_id
from kirana.transitions import TRANSITIONS, UNPAID, Status  # noqa: F401 (re-exported for the order's readers)

# The statuses and the moves between them live in kirana.transitions (one table, with the
# follow-ups each move records); they are re-exported here for the order's readers.
TERMINAL = frozenset({Status.REJECTED, Status.EXPIRED, Status.CANCELLED, Status.REFUNDED, Status.DELIVERED})

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


def history_key(status: Status, attempt: int | None = None) -> str:
    """The key of reaching `status` in the order's history: a status is reached at most once per attempt."""
    return f"{status}-{attempt}" if attempt else str(status)


def history_entry(status: Status, at_ms: int, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"status": str(status), "seq": _SEQ[status], "at_ms": at_ms, **({"detail": dict(detail)} if detail else {})}


def place(
    db: Database,
    new: NewOrder,
    *,
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store `new` as an accepted order, with its "accepted" event, in one insert; return (order, created).

    With an idempotency key, the same key and body give back the first order
    (created=False) and a different body raises IdempotencyConflict. The key
    field is unique and always present (a keyless order uses its own id), so
    one insert decides the race between two retries.
    """
    order_id = new_id("ord")
    at_ms = now_ms()
    scoped_key = f"{new.customer_id}:{idempotency_key}" if idempotency_key else f"auto:{order_id}"
    fingerprint = new.fingerprint()
    doc = {
        "_id": order_id,
        "customer_id": new.customer_id,
        "store_id": new.store_id,
        "items": [asdict(item) for item in new.items],
        "payment_method": str(new.payment_method),
        **({"token_id": new.token_id} if new.token_id else {}),
        **({"redeem_points": new.redeem_points} if new.redeem_points else {}),
        "status": str(Status.ACCEPTED),
        "history": {history_key(Status.ACCEPTED): history_entry(Status.ACCEPTED, at_ms)},
        # Its processing and its "accepted" notification, recorded with it: no order without its work.
        "intents": {name: intent.stored(at_ms)
                    for name, intent in transitions.follow_ups(order_id, None, at_ms=at_ms).items()},
        "intents_at_ms": at_ms,
        "idempotency_key": scoped_key,
        "request_fingerprint": fingerprint,
        "created_at": utcnow(),
        "created_at_ms": at_ms,
        "updated_at_ms": at_ms,
    }
    try:
        db[collections.ORDERS].insert_one(doc)
    except DuplicateKeyError:
        existing = db[collections.ORDERS].find_one({"idempotency_key": scoped_key})
        if existing is None:  # the first holder was withdrawn in between
            return place(db, new, idempotency_key=idempotency_key)
        if existing["request_fingerprint"] != fingerprint:
            raise IdempotencyConflict(idempotency_key or "", existing["_id"]) from None
        return existing, False
    return doc, True


def withdraw(db: Database, order_id: str) -> bool:
    """Remove an order that was accepted but could not be enqueued.

    Only an untouched "accepted" order is removed (its history goes with it),
    so the client's retry with the same Idempotency-Key starts afresh.
    """
    deleted = db[collections.ORDERS].delete_one({"_id": order_id, "status": str(Status.ACCEPTED)})
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
    attempt: int | None = None,
) -> dict[str, Any] | None:
    """Compare-and-set `expected` -> `target`; None when the order was not in `expected`.

    `expected` may be a set of statuses the move is allowed from. The status, its
    event (`history.<key>`) and the follow-ups the move implies (`intents.<name>`,
    kirana.transitions) are set by the same single-document update, so there is
    no moment, and no crash, at which one is stored without the others.
    """
    froms = expected if isinstance(expected, frozenset) else frozenset({expected})
    for current in froms:
        check_transition(current, target)
    move_row = transitions.row(froms, target)
    if move_row is None:  # each status may make it, but no one row of the table makes it from all of them
        raise IllegalTransition(f"no one move of the table goes from {sorted(froms)} to {target}")
    status_filter: Any = str(next(iter(froms))) if len(froms) == 1 else {"$in": sorted(str(s) for s in froms)}
    at_ms = now_ms()
    intents = transitions.follow_ups(order_id, move_row, attempt=attempt, detail=detail, at_ms=at_ms)
    update: dict[str, Any] = {"$set": {
        "status": str(target), "updated_at_ms": at_ms,
        f"history.{history_key(target, attempt)}": history_entry(target, at_ms, detail), **(fields or {}),
        **{f"intents.{name}": intent.stored(at_ms) for name, intent in intents.items()},
    }}
    # The oldest unsent follow-up's time: the dispatch sweep looks for orders by it.
    update["$min"] = {"intents_at_ms": at_ms}
    if unset:
        update["$unset"] = dict.fromkeys(unset, "")
    moved = db[collections.ORDERS].find_one_and_update(
        {"_id": order_id, "status": status_filter, **(guard or {})},
        update,
        return_document=ReturnDocument.AFTER,
    )
    return moved


def check_transition(current: Status, target: Status) -> None:
    if transitions.row(frozenset({current}), target) is None:
        raise IllegalTransition(f"an order cannot go from {current} to {target}")


def intents_sent(db: Database, order: Mapping[str, Any], names: list[str]) -> None:
    """Forget follow-ups the dispatcher has handed on (to the broker, or the outbox).

    One update in the usual case. When the order changed since it was read (a
    newer move may have recorded intents of its own), only these names go and
    `intents_at_ms` stays, so the sweep still finds whatever the newer move left.
    """
    forget = {f"intents.{name}": "" for name in names}
    done = db[collections.ORDERS].update_one({"_id": order["_id"], "updated_at_ms": order["updated_at_ms"]},
                                             {"$unset": {**forget, "intents_at_ms": ""}})
    if not done.matched_count and forget:
        db[collections.ORDERS].update_one({"_id": order["_id"]}, {"$unset": forget})


def pending_intents(db: Database, order_id: str) -> dict[str, Any] | None:
    """The order's unsent follow-ups with what `intents_sent` needs; None when it has none."""
    return db[collections.ORDERS].find_one({"_id": order_id, "intents_at_ms": {"$exists": True}},
                                           {"intents": 1, "intents_at_ms": 1, "updated_at_ms": 1})


def with_unsent_intents(db: Database, older_than_ms: int, limit: int) -> list[dict[str, Any]]:
    """Orders with follow-ups recorded before `older_than_ms` and not yet handed on (a crash in between)."""
    found = db[collections.ORDERS].find({"intents_at_ms": {"$lt": older_than_ms}},
                                        {"intents": 1, "intents_at_ms": 1, "updated_at_ms": 1}).limit(limit)
    return list(found)


def get(db: Database, order_id: str) -> dict[str, Any]:
    order = db[collections.ORDERS].find_one({"_id": order_id})
    if order is None:
        raise OrderNotFound(order_id)
    return order


def history(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The order's events, oldest first (two in the same millisecond in the order of its life)."""
    return sorted(order.get("history", {}).values(), key=lambda e: (e["at_ms"], e["seq"]))


def events(db: Database, order_id: str) -> list[dict[str, Any]]:
    return history(get(db, order_id))


def with_events(db: Database, order_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The order and its events, from one read: they are one document, written together."""
    order = get(db, order_id)
    return order, history(order)


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
