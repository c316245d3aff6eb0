"""Offline sync: batches of operations an app queued while it had no network.

A batch is stored as it arrives (`sync_batches`; a client's batch id is its
own, `<user>:<batch id>`) and each operation once (`sync_operations`, `_id` =
`<user>:<device>:<op_id>`): a re-sent batch or operation finds its operations
stored and adds nothing, and a device that moves to another user starts a
stream of its own. The sync pool then applies one user's device's pending
operations at a time (a per-(user, device) lock, so a later batch never
overtakes an earlier one still pending), in client order:

    order key = (seq, client_at_ms, arrival_ms, arrival_index)

`seq` is the app's own counter per device (0 when the app sends none, so the
device's timestamps order its operations); equal keys fall back to the
server's order of arrival (the batch's arrival time, then the position in the
batch). The device's clock is only ever compared with itself. Times that are
stored (a rider's location point) are moved onto the server's clock by the
batch's skew: `skew_ms = received_at_ms - sent_at_ms` (the device's clock
when it sent the batch), and no corrected time is later than the batch's arrival.

Every operation ends applied, conflict (with a reason: price_changed,
out_of_stock, order_already_cancelled, cannot_cancel) or rejected (with a
reason). Each effect is idempotent on its own (absolute cart quantities, an
order keyed by the operation, a location keyed by its time), so a run that
dies between an effect and its bookkeeping repeats nothing when re-run.
Free of Flask and Celery: submitting and cancelling orders are passed in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import carts, deliveries, payments, stock
from kirana import db as collections
from kirana.clock import now_ms, utcnow
from kirana.config import settings
from kirana.ids import new_id
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status

BATCHES = "sync_batches"
OPERATIONS = "sync_operations"

PENDING, APPLIED, CONFLICT, REJECTED = "pending", "applied", "conflict", "rejected"
FINAL = frozenset({APPLIED, CONFLICT, REJECTED})

# Which roles may send which kinds of operation.
KINDS: Mapping[str, frozenset[str]] = {
    "cart.set": frozenset({"customer"}),
    "cart.remove": frozenset({"customer"}),
    "cart.clear": frozenset({"customer"}),
    "order.submit": frozenset({"customer"}),
    "order.cancel": frozenset({"customer"}),
    "location": frozenset({"rider"}),
}
ALREADY_CANCELLED = frozenset({Status.CANCELLED, Status.REFUND_PENDING, Status.REFUNDED})


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Orders:
    """How operations reach the order path (the Celery side passes these in)."""

    submit: Callable[[NewOrder, str], dict[str, Any]]  # (order, idempotency key) -> order
    cancel: Callable[[str], str]  # order id -> its new status; raises payments.CannotCancel


# --- receiving -------------------------------------------------------------------------------


def op_key(user_id: str, device_id: str, op_id: str) -> str:
    return f"{user_id}:{device_id}:{op_id}"


def batch_key(user_id: str, batch_id: str) -> str:
    """A client's batch id, scoped to its user: two users choosing the same id never meet."""
    return f"{user_id}:{batch_id}"


def store_batch(db: Database, *, user_id: str, role: str, device_id: str, ops: list[dict[str, Any]],
                batch_id: str | None = None, sent_at_ms: int | None = None) -> tuple[dict[str, Any], bool]:
    """Store a batch and its new operations; (batch, created). A batch id seen before returns that batch."""
    key = batch_key(user_id, batch_id) if batch_id is not None else new_id("syb")
    if batch_id is not None:
        found = db[BATCHES].find_one({"_id": key})
        if found is not None:
            return found, False
    received = now_ms()
    skew = received - sent_at_ms if sent_at_ms is not None else 0
    keys = []
    for index, op in enumerate(ops):
        op_id = op_key(user_id, device_id, op["op_id"])
        keys.append(op_id)
        client_at = int(op["client_at_ms"])
        doc = {
            "_id": op_id, "device_id": device_id, "user_id": user_id, "role": role, "op_id": op["op_id"],
            "batch_id": key, "kind": op["kind"], "data": op.get("data", {}), "seq": int(op.get("seq") or 0),
            "client_at_ms": client_at, "at_ms": min(client_at + skew, received), "arrival_ms": received,
            "arrival_index": index, "status": PENDING, "idempotency_key": f"sync:{op_id}", "created_at": utcnow(),
        }
        # Sent before (an earlier copy of this batch, or another batch): stored once, applied once.
        with contextlib.suppress(DuplicateKeyError):
            db[OPERATIONS].insert_one(doc)
    batch = {"_id": key, "client_batch_id": batch_id, "user_id": user_id, "role": role, "device_id": device_id,
             "op_keys": keys, "status": PENDING, "received_at_ms": received, "skew_ms": skew,
             "created_at": utcnow(), "updated_at_ms": received}
    try:
        db[BATCHES].insert_one(batch)
    except DuplicateKeyError:  # the same client batch id raced in twice
        found = db[BATCHES].find_one({"_id": key})
        if found is None:
            raise
        return found, False
    return batch, True


def get_batch(db: Database, user_id: str, batch_id: str) -> dict[str, Any] | None:
    """The user's batch by the id the client chose, or by the server's (a batch sent without one)."""
    batch = db[BATCHES].find_one({"_id": batch_key(user_id, batch_id)}) or db[BATCHES].find_one({"_id": batch_id})
    return batch if batch is not None and batch["user_id"] == user_id else None


def public_id(batch: Mapping[str, Any]) -> str:
    return str(batch.get("client_batch_id") or batch["_id"])


def results(db: Database, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One result per operation of the batch, in the batch's order."""
    shown = []
    for key in batch["op_keys"]:
        # One read by id each: nx-27017 answers `$in` by scanning the collection.
        op = db[OPERATIONS].find_one({"_id": key})
        if op is None:
            continue
        shown.append({"op_id": op["op_id"], "kind": op["kind"], "status": op["status"],
                      **({"reason": op["reason"]} if op.get("reason") else {}),
                      **({"result": op["result"]} if op.get("result") else {}),
                      **({"first_sent_in": _shown_batch(op["batch_id"], batch["user_id"])}
                         if op["batch_id"] != batch["_id"] else {})})
    return shown


def _shown_batch(stored: str, user_id: str) -> str:
    """A batch id as its client knows it (the user's own prefix off)."""
    return stored.removeprefix(f"{user_id}:")


def view(db: Database, batch: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": public_id(batch), "device_id": batch["device_id"], "status": batch["status"],
            "received_at_ms": batch["received_at_ms"], "skew_ms": batch["skew_ms"],
            **({"applied_at_ms": batch["applied_at_ms"]} if batch.get("applied_at_ms") else {}),
            "results": results(db, batch)}


# --- applying --------------------------------------------------------------------------------


def order_key(op: Mapping[str, Any]) -> tuple[int, int, int, int]:
    return (int(op["seq"]), int(op["client_at_ms"]), int(op["arrival_ms"]), int(op["arrival_index"]))


def pending_ops(db: Database, user_id: str, device_id: str) -> list[dict[str, Any]]:
    return sorted(db[OPERATIONS].find({"user_id": user_id, "device_id": device_id, "status": PENDING}), key=order_key)


def apply_device(db: Database, user_id: str, device_id: str, handlers: Orders, *, limit: int) -> int:
    """Apply up to `limit` of the user's device's pending operations in client order; how many were applied.

    The caller holds the (user, device) lock: nothing else applies these operations meanwhile.
    """
    done = 0
    for op in pending_ops(db, user_id, device_id)[:limit]:
        outcome = apply_op(db, op, handlers)
        db[OPERATIONS].update_one(
            {"_id": op["_id"], "status": PENDING},
            {"$set": {"status": outcome.status, "reason": outcome.reason, "result": dict(outcome.result or {}),
                      "applied_at_ms": now_ms()}},
        )
        done += 1
    return done


def finish_batches(db: Database, user_id: str, device_id: str) -> list[dict[str, Any]]:
    """Mark the user's device's pending batches whose operations are all final as applied; those batches."""
    finished = []
    for batch in db[BATCHES].find({"user_id": user_id, "device_id": device_id, "status": PENDING}):
        if any((db[OPERATIONS].find_one({"_id": key}, {"status": 1}) or {}).get("status") not in FINAL
               for key in batch["op_keys"]):
            continue
        at = now_ms()
        moved = db[BATCHES].update_one({"_id": batch["_id"], "status": PENDING},
                                       {"$set": {"status": APPLIED, "applied_at_ms": at, "updated_at_ms": at}})
        if moved.modified_count:
            finished.append({**batch, "status": APPLIED, "applied_at_ms": at})
    return finished


def stale_batches(db: Database, older_than_ms: int, limit: int) -> list[dict[str, Any]]:
    """Pending batches received before `older_than_ms` (the sweep's safety net)."""
    found = db[BATCHES].find({"status": PENDING, "received_at_ms": {"$lt": older_than_ms}},
                             {"_id": 1, "user_id": 1, "device_id": 1}).sort("received_at_ms", 1).limit(limit)
    return list(found)


def oldest_pending_age_s(db: Database) -> float:
    """Age of the oldest batch not yet applied; 0 when none waits (for /metrics)."""
    oldest = list(db[BATCHES].find({"status": PENDING}, {"received_at_ms": 1}).sort("received_at_ms", 1).limit(1))
    return max(0.0, (now_ms() - int(oldest[0]["received_at_ms"])) / 1000) if oldest else 0.0


def apply_op(db: Database, op: Mapping[str, Any], handlers: Orders) -> Outcome:
    kind, data = op["kind"], op.get("data") or {}
    if op["role"] not in KINDS.get(kind, frozenset()):
        return Outcome(REJECTED, "not_allowed" if kind in KINDS else "unknown_kind")
    try:
        if kind.startswith("cart."):
            return _cart(db, op["user_id"], kind, data)
        if kind == "order.submit":
            return _submit(db, op, data, handlers)
        if kind == "order.cancel":
            return _cancel(db, op["user_id"], data, handlers)
        return _location(db, op, data)
    except (KeyError, TypeError, ValueError) as exc:
        return Outcome(REJECTED, "invalid", {"detail": f"{type(exc).__name__}: {exc}"})


def _product(db: Database, store_id: str, sku: str) -> dict[str, Any] | None:
    return db[collections.PRODUCTS].find_one({"_id": stock.product_id(store_id, sku)})


def _check_item(db: Database, store_id: str, sku: str, qty: int, seen_price: int | None) -> Outcome | None:
    """A conflict (or rejection) for one wanted item, or None when it can be had as the app saw it."""
    product = _product(db, store_id, sku)
    if product is None:
        return Outcome(REJECTED, "unknown_product", {"sku": sku})
    price = int(product["price_paise"])
    if seen_price is not None and int(seen_price) != price:
        return Outcome(CONFLICT, "price_changed", {"sku": sku, "seen_price_paise": int(seen_price),
                                                   "price_paise": price})
    left = int(product.get("stock", 0))
    if left < qty:
        return Outcome(CONFLICT, "out_of_stock", {"sku": sku, "wanted": qty, "available": max(left, 0)})
    return None


def _cart(db: Database, customer_id: str, kind: str, data: Mapping[str, Any]) -> Outcome:
    store_id = str(data["store_id"])
    if kind == "cart.clear":
        cart = carts.clear(db, customer_id, store_id)
    elif kind == "cart.remove":
        cart = carts.remove(db, customer_id, store_id, str(data["sku"]))
    else:
        qty = int(data["qty"])
        if qty > 0:
            problem = _check_item(db, store_id, str(data["sku"]), qty, data.get("price_paise"))
            if problem is not None:
                return problem
        cart = carts.set_quantity(db, customer_id, store_id, str(data["sku"]), qty)
    return Outcome(APPLIED, None, {"cart_version": int(cart.get("version", 0))})


def _submit(db: Database, op: Mapping[str, Any], data: Mapping[str, Any], handlers: Orders) -> Outcome:
    store_id = str(data["store_id"])
    items = [(str(i["sku"]), int(i["qty"]), i.get("price_paise")) for i in data["items"]]
    if not items or any(qty <= 0 for _, qty, _ in items) or len({s for s, _, _ in items}) != len(items):
        return Outcome(REJECTED, "invalid", {"detail": "items: one line per sku, each qty > 0"})
    for sku, qty, seen in items:
        problem = _check_item(db, store_id, sku, qty, seen)
        if problem is not None:
            return problem
    cfg = settings()
    # The same bounds as POST /api/v1/orders (api/schemas.py OrderIn).
    if len(items) > cfg.max_order_items or any(qty > cfg.max_item_qty for _, qty, _ in items):
        return Outcome(REJECTED, "invalid", {"detail": f"at most {cfg.max_order_items} lines of at most "
                                                       f"{cfg.max_item_qty} each"})
    method = PaymentMethod(str(data.get("payment_method", "cod")))
    if method == PaymentMethod.TOKEN:
        return Outcome(REJECTED, "invalid", {"detail": "saved cards cannot be used offline"})
    new = NewOrder(customer_id=op["user_id"], store_id=store_id,
                   items=tuple(OrderItem(sku, qty) for sku, qty, _ in items), payment_method=method)
    # Keyed by the operation: a replay finds the order the first run placed.
    order = handlers.submit(new, str(op.get("idempotency_key") or f"sync:{op['_id']}"))
    return Outcome(APPLIED, None, {"order_id": order["_id"]})


def _cancel(db: Database, customer_id: str, data: Mapping[str, Any], handlers: Orders) -> Outcome:
    order_id = str(data["order_id"])
    order = db[collections.ORDERS].find_one({"_id": order_id}, {"customer_id": 1, "status": 1})
    if order is None or order["customer_id"] != customer_id:
        return Outcome(REJECTED, "unknown_order", {"order_id": order_id})
    if Status(order["status"]) in ALREADY_CANCELLED:
        return Outcome(CONFLICT, "order_already_cancelled", {"order_id": order_id, "status": order["status"]})
    try:
        status = handlers.cancel(order_id)
    except payments.CannotCancel as exc:
        return Outcome(CONFLICT, "cannot_cancel", {"order_id": order_id, "detail": str(exc)})
    return Outcome(APPLIED, None, {"order_id": order_id, "status": status})


def _location(db: Database, op: Mapping[str, Any], data: Mapping[str, Any]) -> Outcome:
    order_id = str(data["order_id"])
    lat, lng = float(data["lat"]), float(data["lng"])
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return Outcome(REJECTED, "invalid", {"detail": "lat/lng out of range"})
    order = db[collections.ORDERS].find_one({"_id": order_id}, {"rider_id": 1, "status": 1})
    if order is None or order.get("rider_id") != op["user_id"]:
        return Outcome(REJECTED, "unknown_order", {"order_id": order_id})
    # A point taken offline may arrive after the hand-over; it still belongs to the trail.
    if order["status"] not in {Status.OUT_FOR_DELIVERY, Status.DELIVERED}:
        return Outcome(REJECTED, "not_out_for_delivery", {"order_id": order_id, "status": order["status"]})
    deliveries.record_location(db, order_id, op["user_id"], lat=lat, lng=lng, at_ms=int(op["at_ms"]))
    return Outcome(APPLIED, None, {"order_id": order_id, "at_ms": int(op["at_ms"])})
