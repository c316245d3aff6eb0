"""Processing an accepted order: reserve stock, price it, decide its fate.

One run at a time owns an order: it claims it by moving it to "processing"
with a lease (a token and an expiry). Only the holder of a live lease
reserves stock or moves the order on, so a duplicate delivery running side by
side does nothing. When a worker dies mid-way the lease runs out and the next
delivery takes the order over; the stock holds it finds are its own, because
reservations are idempotent per order (see kirana.stock).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from kirana import db as collections
from kirana import orders, stock
from kirana.clock import now_ms
from kirana.loyalty import ledger as loyalty_ledger
from kirana.loyalty.rules import Rules
from kirana.orders import PaymentMethod, RejectReason, Status


@dataclass(frozen=True)
class Outcome:
    order_id: str
    status: str
    # False when this run found the work already done (or being done).
    acted: bool
    reason: str | None = None
    # The order as this run last wrote or read it: its recorded follow-ups go to the dispatcher.
    order: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # Set when another run holds the order's lease: until when (epoch ms).
    busy_until_ms: int | None = None


def _claim_accepted(db: Database, order_id: str, lease_ms: int, token: str) -> dict[str, Any] | None:
    """The usual first delivery: accepted -> processing with this run's lease, one write."""
    return orders.move(db, order_id, Status.ACCEPTED, Status.PROCESSING,
                       fields={"claim": {"token": token, "until_ms": now_ms() + lease_ms}})


def _reclaim(db: Database, order_id: str, lease_ms: int, token: str) -> dict[str, Any] | None:
    """A processing order this run may carry on: its own claim (a retry), or one whose lease ran out."""
    until = now_ms() + lease_ms
    # Our own claim: a retry or redelivery of the same task (same token) carries on.
    claimed = db[collections.ORDERS].find_one_and_update(
        {"_id": order_id, "status": str(Status.PROCESSING), "claim.token": token},
        {"$set": {"claim": {"token": token, "until_ms": until}, "updated_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if claimed is None:
        # Take over a processing order whose lease has run out (its worker died).
        # This is not a new status, so it records no event.
        claimed = db[collections.ORDERS].find_one_and_update(
            {"_id": order_id, "status": str(Status.PROCESSING), "claim.until_ms": {"$lt": now_ms()}},
            {"$set": {"claim": {"token": token, "until_ms": until}, "updated_at_ms": now_ms()}},
            return_document=ReturnDocument.AFTER,
        )
    return claimed


# Stores known to exist, per process, with when they were seen: a store is not removed while it
# takes orders, and this saves the orders pool one read per order. A miss is never cached.
STORE_SEEN_FOR_MS = 60_000
_stores_seen: dict[str, int] = {}


def _store_exists(db: Database, store_id: str) -> bool:
    seen = _stores_seen.get(store_id)
    if seen is not None and now_ms() - seen < STORE_SEEN_FOR_MS:
        return True
    if db[collections.STORES].find_one({"_id": store_id}, {"_id": 1}) is None:
        return False
    _stores_seen[store_id] = now_ms()
    return True


def settle_holds(db: Database, order: dict[str, Any]) -> None:
    """The order is sold: its holds become sales (idempotent)."""
    _settle_holds(db, order)


def release_holds(db: Database, order: dict[str, Any]) -> None:
    """The order will not be sold: give its held stock back (idempotent)."""
    _release_holds(db, order)


def _settle_holds(db: Database, order: dict[str, Any]) -> None:
    for item in order["items"]:
        stock.settle(db, order["store_id"], order["_id"], item["sku"])


def _release_holds(db: Database, order: dict[str, Any]) -> None:
    for item in order["items"]:
        stock.release(db, order["store_id"], order["_id"], item["sku"])


def _reject(
    db: Database, order: dict[str, Any], token: str, reason: RejectReason, detail: dict[str, Any],
) -> Outcome:
    _release_holds(db, order)
    moved = orders.move(
        db, order["_id"], Status.PROCESSING, Status.REJECTED,
        guard={"claim.token": token},
        fields={"reject_reason": str(reason), "reject_detail": detail},
        unset=("claim",),
        detail={"reason": str(reason), **detail},
    )
    if moved is None:
        return _not_acted(db, order["_id"])
    return Outcome(order["_id"], str(Status.REJECTED), acted=True, reason=str(reason), order=moved)


def _not_acted(db: Database, order_id: str) -> Outcome:
    found = orders.get(db, order_id)
    claim = found.get("claim") if found["status"] == Status.PROCESSING else None
    until = int(claim.get("until_ms", 0)) if claim else 0
    return Outcome(order_id, found["status"], acted=False, order=found,
                   busy_until_ms=until if until > now_ms() else None)


def process_order(db: Database, order_id: str, *, lease_ms: int, pay_within_ms: int,
                  claim_token: str | None = None) -> Outcome:
    """Take an accepted order to confirmed (cash on delivery), reserved (to be paid online) or rejected."""
    # A fresh token per run: two deliveries of one message must not share a claim.
    token = claim_token or uuid.uuid4().hex
    # The claim first: for the usual (first) delivery it is the run's one read of the order.
    claimed = _claim_accepted(db, order_id, lease_ms, token)
    if claimed is None:
        found = orders.get(db, order_id)
        if found["status"] == Status.CONFIRMED:
            # A redelivery after a crash between confirming and settling finishes
            # the settling; on a settled order this changes nothing.
            _settle_holds(db, found)
            return Outcome(order_id, found["status"], acted=False, order=found)
        if found["status"] != Status.PROCESSING:
            return Outcome(order_id, found["status"], acted=False, order=found)
        claimed = _reclaim(db, order_id, lease_ms, token)
        if claimed is None:
            return _not_acted(db, order_id)
    order = claimed
    try:
        return _fulfil(db, order, token, pay_within_ms)
    except Exception:
        # Failing (a transient error the task retries): give the claim up at once, so
        # the retry need not wait for the lease to run out. Best effort: if this write
        # fails too, the lease expires and the stuck-order sweep re-enqueues the order.
        with contextlib.suppress(Exception):
            db[collections.ORDERS].update_one({"_id": order_id, "status": str(Status.PROCESSING),
                                               "claim.token": token}, {"$set": {"claim.until_ms": 0}})
        raise


def _fulfil(db: Database, order: dict[str, Any], token: str, pay_within_ms: int) -> Outcome:
    order_id = order["_id"]

    if not _store_exists(db, order["store_id"]):
        return _reject(db, order, token, RejectReason.UNKNOWN_STORE, {"store_id": order["store_id"]})
    if order["payment_method"] not in {m.value for m in PaymentMethod}:
        detail = {"payment_method": order["payment_method"]}
        return _reject(db, order, token, RejectReason.UNSUPPORTED_PAYMENT, detail)

    lines: list[dict[str, Any]] = []
    for item in order["items"]:
        taken = stock.reserve(db, order["store_id"], order_id, item["sku"], item["qty"])
        if isinstance(taken, stock.Unknown):
            return _reject(db, order, token, RejectReason.UNKNOWN_SKU, {"sku": taken.sku})
        if isinstance(taken, stock.Short):
            return _reject(
                db, order, token, RejectReason.OUT_OF_STOCK,
                {"sku": taken.sku, "wanted": taken.wanted, "available": taken.available},
            )
        lines.append(price_line(taken.product, taken.qty))

    total = sum(line["line_total_paise"] for line in lines)
    priced: dict[str, Any] = {"lines": lines, "total_paise": total}
    if order.get("redeem_points"):
        discounted = _redeem(db, order, token, total)
        if isinstance(discounted, Outcome):
            return discounted
        priced = {**priced, **discounted}
        total = priced["total_paise"]
    if order["payment_method"] != PaymentMethod.COD:
        # Paid online: hold the stock until the payment comes or the order expires.
        reserved = orders.move(
            db, order_id, Status.PROCESSING, Status.RESERVED,
            guard={"claim.token": token},
            fields={**priced, "payment_attempt": 1, "pay_by_ms": now_ms() + pay_within_ms},
            unset=("claim",), detail={"total_paise": total}, attempt=1,
        )
        if reserved is None:
            return _not_acted(db, order_id)
        return Outcome(order_id, str(Status.RESERVED), acted=True, order=reserved)
    # Cash on delivery needs nothing more: the order is confirmed now.
    moved = orders.move(
        db, order_id, Status.PROCESSING, Status.CONFIRMED,
        guard={"claim.token": token},
        fields=priced,
        unset=("claim",),
        detail={"total_paise": total},
    )
    if moved is None:  # lost the lease; whoever holds it now finishes the order
        return _not_acted(db, order_id)
    _settle_holds(db, moved)
    return Outcome(order_id, str(Status.CONFIRMED), acted=True, order=moved)


def _redeem(db: Database, order: dict[str, Any], token: str, subtotal: int) -> dict[str, Any] | Outcome:
    """Debit the points the order redeems (atomic, once per order): the priced fields, or a rejection.

    Last before the order moves on, after the stock is held, so no later step of
    this run can reject it with the points taken; a rejection, expiry or
    cancellation afterwards gives them back (kirana.loyalty.sync_order).
    """
    points = int(order["redeem_points"])
    discount = Rules.from_settings().discount_paise(points)
    if discount > subtotal:
        return _reject(db, order, token, RejectReason.POINTS_EXCEED_TOTAL,
                       {"redeem_points": points, "discount_paise": discount, "subtotal_paise": subtotal})
    if not loyalty_ledger.redeem(db, order):
        return _reject(db, order, token, RejectReason.INSUFFICIENT_POINTS,
                       {"redeem_points": points, "balance": loyalty_ledger.balance(db, order["customer_id"])})
    return {"subtotal_paise": subtotal, "discount_paise": discount, "total_paise": subtotal - discount}


def price_line(product: dict[str, Any], qty: int) -> dict[str, Any]:
    """A priced order line, from the catalog's price, never the client's.

    The category is kept as it was at the sale: loyalty, achievements and store analytics
    read it from the order instead of reading every product again (kirana.catalog.line_categories).
    """
    unit = int(product["price_paise"])
    return {
        "sku": product["sku"],
        "name": product["name"],
        "category": str(product.get("category") or ""),
        "qty": qty,
        "unit_price_paise": unit,
        "line_total_paise": unit * qty,
    }
