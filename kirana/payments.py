"""Online payment of an order: attempts, capture exactly once, failures, refunds.

Each try to pay an order is a payment *attempt* (`payments` collection, id
``<order id>:p<n>``) with its own Razorpay order. An attempt's status only
moves forward along `ADVANCES_FROM` (a late or repeated webhook never moves
it back), each move a compare-and-set.

Capture is exactly once: the attempt is re-read from Razorpay before every
capture (a capture that timed out after the bank captured is found
captured), one capture runs at a time per attempt (a lease), and the amount
always comes from the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import fulfilment, orders, stock
from kirana.clock import now_ms, utcnow
from kirana.gateway import GatewayRefused, Razorpay
from kirana.orders import Status

PAYMENTS = "payments"
WEBHOOK_EVENTS = "webhook_events"


class PaymentStatus(StrEnum):
    CREATED = "created"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


S = PaymentStatus
# target -> the statuses it may be reached from. Nothing leaves captured but a
# refund, and failed never overrides authorized or captured; a failed UPI
# payment may still be authorized or captured late.
ADVANCES_FROM: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.AUTHORIZED: frozenset({S.CREATED, S.FAILED}),
    S.CAPTURED: frozenset({S.CREATED, S.AUTHORIZED, S.FAILED}),
    S.FAILED: frozenset({S.CREATED}),
    S.REFUND_PENDING: frozenset({S.CAPTURED}),
    S.REFUNDED: frozenset({S.CAPTURED, S.REFUND_PENDING}),
}
PAID = frozenset({S.CAPTURED, S.REFUND_PENDING, S.REFUNDED})


class PaymentError(Exception):
    pass


class PaymentMismatch(PaymentError):
    """The gateway's payment is not the one this attempt expects (amount, order): never capture it."""


class UnknownPayment(PaymentError):
    pass


def attempt_id(order_id: str, attempt: int) -> str:
    return f"{order_id}:p{attempt}"


def get_attempt(db: Database, payment_id: str) -> dict[str, Any]:
    found = db[PAYMENTS].find_one({"_id": payment_id})
    if found is None:
        raise UnknownPayment(payment_id)
    return found


def by_gateway_order(db: Database, rzp_order_id: str) -> dict[str, Any] | None:
    return db[PAYMENTS].find_one({"razorpay_order_id": rzp_order_id})


def advance(db: Database, payment_id: str, target: PaymentStatus, **fields: Any) -> dict[str, Any] | None:
    """Move an attempt forward to `target`; None when it is not in a status that allows it."""
    return db[PAYMENTS].find_one_and_update(
        {"_id": payment_id, "status": {"$in": sorted(ADVANCES_FROM[target])}},
        {"$set": {"status": str(target), "updated_at_ms": now_ms(), **fields}},
        return_document=ReturnDocument.AFTER,
    )


# --- opening an attempt ---------------------------------------------------------------


def open_attempt(db: Database, gateway: Razorpay, order_id: str, attempt: int, *,
                 customer_id: str | None, order: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Create the gateway order for attempt `attempt` and put the order in awaiting_payment.

    Idempotent: the attempt id is fixed per (order, attempt), and the gateway
    order is stored only once. Returns the order, or None when it no longer
    waits for this attempt.
    """
    order = order if order is not None else orders.get(db, order_id)
    if order["status"] != Status.RESERVED or order.get("payment_attempt") != attempt:
        return None
    pid = attempt_id(order_id, attempt)
    payment: dict[str, Any] = {
        "_id": pid, "order_id": order_id, "attempt": attempt, "customer_id": order["customer_id"],
        "amount_paise": order["total_paise"], "method": order["payment_method"],
        "token_id": order.get("token_id"), "status": str(S.CREATED), "capturing_until_ms": 0,
        "created_at": utcnow(), "created_at_ms": now_ms(), "updated_at_ms": now_ms(),
    }
    try:
        db[PAYMENTS].insert_one(payment)
    except DuplicateKeyError:  # opened before (a retry): the stored attempt is the one
        payment = get_attempt(db, pid)
    if not payment.get("razorpay_order_id"):
        created = gateway.create_order(payment["amount_paise"], receipt=pid,
                                       notes={"order_id": order_id, "attempt": str(attempt)},
                                       customer_id=customer_id)
        # A retry after a lost answer may have made a second gateway order:
        # the first one stored wins, the other stays unpaid and expires there.
        stored = db[PAYMENTS].update_one({"_id": pid, "razorpay_order_id": {"$exists": False}},
                                         {"$set": {"razorpay_order_id": created["id"], "updated_at_ms": now_ms()}})
        payment = {**payment, "razorpay_order_id": created["id"]} if stored.modified_count else get_attempt(db, pid)
    checkout = {
        "attempt": attempt, "payment_id": pid, "razorpay_order_id": payment["razorpay_order_id"],
        "key_id": gateway.key_id, "amount_paise": payment["amount_paise"], "currency": "INR",
        "method": payment["method"],
        **({"customer_id": customer_id} if customer_id else {}),
        **({"token_id": payment["token_id"]} if payment.get("token_id") else {}),
    }
    return orders.move(db, order_id, Status.RESERVED, Status.AWAITING_PAYMENT,
                       guard={"payment_attempt": attempt}, fields={"payment": checkout},
                       detail={"razorpay_order_id": payment["razorpay_order_id"]}, attempt=attempt)


def retry(db: Database, order_id: str, *, pay_within_ms: int) -> int | None:
    """A new attempt after a failed payment; returns its number, or None when not possible now."""
    order = orders.get(db, order_id)
    if order["status"] != Status.PAYMENT_FAILED:
        return None
    attempt = int(order.get("payment_attempt", 1)) + 1
    moved = orders.move(db, order_id, Status.PAYMENT_FAILED, Status.RESERVED,
                        guard={"payment_attempt": attempt - 1},
                        fields={"payment_attempt": attempt, "pay_by_ms": max(order.get("pay_by_ms", 0),
                                                                             now_ms() + pay_within_ms)},
                        unset=("payment",), attempt=attempt)
    return attempt if moved is not None else None


# --- the customer's checkout ------------------------------------------------------------


def record_checkout(db: Database, rzp_order_id: str, rzp_payment_id: str,
                    payment: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The app reports a payment for a gateway order (its signature already checked); `payment`: its attempt,
    when the caller read it already."""
    payment = payment if payment is not None else by_gateway_order(db, rzp_order_id)
    if payment is None:
        return None
    if payment.get("razorpay_payment_id"):
        return payment  # reported before: the first report stands
    stored = db[PAYMENTS].update_one({"_id": payment["_id"], "razorpay_payment_id": {"$exists": False}},
                                     {"$set": {"razorpay_payment_id": rzp_payment_id, "updated_at_ms": now_ms()}})
    return {**payment, "razorpay_payment_id": rzp_payment_id} if stored.modified_count else get_attempt(
        db, payment["_id"])


# --- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """What became of an order when its payment was captured."""

    order_status: str
    # The money must go back: the order was gone, or paid twice.
    refund: bool = False
    # The order as this run wrote or read it: its recorded follow-ups go to the dispatcher.
    order: dict[str, Any] | None = field(default=None, repr=False, compare=False)


def complete_order(db: Database, payment: dict[str, Any]) -> Settled:
    order_id = payment["order_id"]
    moved = orders.move(db, order_id, orders.UNPAID, Status.CONFIRMED,
                        fields={"paid_payment_id": payment["_id"], "paid_at_ms": now_ms()},
                        detail={"payment_id": payment["_id"], "amount_paise": payment["amount_paise"]})
    if moved is not None:
        fulfilment.settle_holds(db, moved)
        return Settled(str(Status.CONFIRMED), order=moved)
    order = orders.get(db, order_id)
    if order.get("paid_payment_id") == payment["_id"]:
        if order["status"] == Status.CONFIRMED:
            # A run cut short after the move (MongoDB failed, the worker died): finish
            # its settle (idempotent).
            fulfilment.settle_holds(db, order)
        return Settled(order["status"], order=order)
    # Captured for an order that expired, was cancelled, or was already paid by another attempt.
    advance(db, payment["_id"], S.REFUND_PENDING, refund_reason=f"order {order['status']}")
    return Settled(order["status"], refund=True)


def mark_captured(db: Database, payment: dict[str, Any], gateway_payment: dict[str, Any]) -> Settled:
    current = advance(db, payment["_id"], S.CAPTURED, razorpay_payment_id=gateway_payment["id"],
                      captured_at_ms=now_ms(), capturing_until_ms=0) or get_attempt(db, payment["_id"])
    if current["status"] == S.REFUND_PENDING:
        return Settled(orders.get(db, payment["order_id"])["status"], refund=True)
    return complete_order(db, current)


def mark_failed(db: Database, payment: dict[str, Any], gateway_payment: dict[str, Any]) -> bool:
    failed = advance(db, payment["_id"], S.FAILED, razorpay_payment_id=gateway_payment["id"],
                     error_code=gateway_payment.get("error_code"),
                     error_description=gateway_payment.get("error_description"))
    if failed is None:
        current = get_attempt(db, payment["_id"])
        if current.get("status") != S.FAILED:
            return False
        # Failed already: a run cut short after marking the attempt may not have moved the order.
    moved = orders.move(db, payment["order_id"], Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED,
                        guard={"payment_attempt": payment["attempt"]},
                        detail={"payment_id": payment["_id"], "error_code": gateway_payment.get("error_code")},
                        attempt=payment["attempt"])
    return failed is not None or moved is not None


# --- capture ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureResult:
    outcome: str  # captured | already_captured | captured_elsewhere | failed | not_authorized | busy
    settled: Settled | None = None
    # busy: when the other run's capture lease lapses; the caller tries again then, because
    # a run that died holding the lease leaves nothing else to come back for this payment.
    retry_in_ms: int | None = None


def _gateway_payment(gateway: Razorpay, payment: dict[str, Any]) -> dict[str, Any] | None:
    if payment.get("razorpay_payment_id"):
        return gateway.fetch_payment(payment["razorpay_payment_id"])
    # No payment id reported yet: ask the gateway order which payments it has.
    found = gateway.order_payments(payment["razorpay_order_id"])
    for wanted in ("captured", "authorized", "failed"):
        for item in found:
            if item["status"] == wanted:
                return item
    return None


def capture(db: Database, gateway: Razorpay, payment_id: str, *, lease_ms: int,
            owner: str | None = None) -> CaptureResult:
    """Capture an authorized attempt once, or record what Razorpay says became of it.

    `owner` names the run (the task id, the same across its retries and
    redeliveries): a run whose lease write landed but whose reply was lost
    (MongoDB went away) takes its own lease back instead of finding it busy.
    """
    payment = get_attempt(db, payment_id)
    if payment["status"] in PAID:
        return CaptureResult("already_captured", complete_order(db, payment)
                             if payment["status"] == S.CAPTURED else None)
    if not payment.get("razorpay_order_id"):
        return CaptureResult("not_authorized")
    remote = _gateway_payment(gateway, payment)
    if remote is None or remote["status"] == "created":
        return CaptureResult("not_authorized")
    if remote["amount"] != payment["amount_paise"] or remote["order_id"] != payment["razorpay_order_id"]:
        raise PaymentMismatch(f"{payment_id}: gateway payment {remote['id']} is for {remote['amount']} paise "
                              f"on {remote['order_id']}, expected {payment['amount_paise']}")
    if remote["status"] == "captured":
        return CaptureResult("captured_elsewhere", mark_captured(db, payment, remote))
    if remote["status"] == "failed":
        mark_failed(db, payment, remote)
        return CaptureResult("failed")
    if remote["status"] != "authorized":
        return CaptureResult("not_authorized")
    advance(db, payment_id, S.AUTHORIZED, razorpay_payment_id=remote["id"])
    busy_for_ms = _capture_lease(db, payment_id, lease_ms, owner)
    if busy_for_ms is not None:
        return CaptureResult("busy", retry_in_ms=busy_for_ms)
    try:
        captured = gateway.capture(remote["id"], payment["amount_paise"])
    except GatewayRefused:
        # Refused: most likely captured already by a run whose answer was lost.
        again = gateway.fetch_payment(remote["id"])
        db[PAYMENTS].update_one({"_id": payment_id}, {"$set": {"capturing_until_ms": 0}})
        if again["status"] == "captured":
            return CaptureResult("captured_elsewhere", mark_captured(db, payment, again))
        raise
    except Exception:
        # Unknown whether the bank captured: free the lease, and the retry re-reads first.
        db[PAYMENTS].update_one({"_id": payment_id}, {"$set": {"capturing_until_ms": 0}})
        raise
    return CaptureResult("captured", mark_captured(db, payment, captured))


def _capture_lease(db: Database, payment_id: str, lease_ms: int, owner: str | None) -> int | None:
    """Lease the attempt to `owner` for `lease_ms`: None when it is ours now; else, held by another
    run, the ms until that lease lapses."""
    now = now_ms()
    lease = {"$set": {"capturing_until_ms": now + lease_ms, "capturing_by": owner}}
    leased = db[PAYMENTS].find_one_and_update(
        {"_id": payment_id, "status": str(S.AUTHORIZED), "capturing_until_ms": {"$lt": now}}, lease)
    if leased is None and owner is not None:
        # Two guarded writes rather than one `$or`: the subset keeps to plain equality guards.
        leased = db[PAYMENTS].find_one_and_update(
            {"_id": payment_id, "status": str(S.AUTHORIZED), "capturing_by": owner}, lease)
    if leased is not None:
        return None
    current = get_attempt(db, payment_id)
    return max(int(current.get("capturing_until_ms") or 0) - now, 0)


# --- refunds ------------------------------------------------------------------------------


def refund(db: Database, gateway: Razorpay, payment_id: str) -> str:
    """Refund a captured attempt in full, once."""
    payment = get_attempt(db, payment_id)
    if payment["status"] == S.REFUNDED or payment.get("refund_id"):
        return "already_requested"
    if payment["status"] == S.CAPTURED:
        advance(db, payment_id, S.REFUND_PENDING)
        payment = get_attempt(db, payment_id)
    if payment["status"] != S.REFUND_PENDING:
        return f"not_refundable_{payment['status']}"
    remote = gateway.fetch_payment(payment["razorpay_payment_id"])
    if remote.get("amount_refunded", 0) >= payment["amount_paise"]:
        # Refunded by a run whose answer was lost.
        db[PAYMENTS].update_one({"_id": payment_id}, {"$set": {"refund_id": "unknown-already-refunded"}})
        return "already_refunded"
    created = gateway.refund(payment["razorpay_payment_id"], payment["amount_paise"], receipt=payment_id)
    db[PAYMENTS].update_one({"_id": payment_id, "refund_id": {"$exists": False}},
                            {"$set": {"refund_id": created["id"], "updated_at_ms": now_ms()}})
    return "requested"


def refund_processed(db: Database, rzp_payment_id: str, refund_entity: dict[str, Any]) -> bool:
    payment = db[PAYMENTS].find_one({"razorpay_payment_id": rzp_payment_id})
    if payment is None:
        return False
    done = advance(db, payment["_id"], S.REFUNDED, refund_id=refund_entity.get("id"), refunded_at_ms=now_ms())
    orders.move(db, payment["order_id"], Status.REFUND_PENDING, Status.REFUNDED,
                guard={"paid_payment_id": payment["_id"]}, detail={"refund_id": refund_entity.get("id")})
    return done is not None


# --- cancelling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    status: str
    refund_payment_id: str | None = None


class CannotCancel(PaymentError):
    pass


def cancel(db: Database, order_id: str) -> Cancelled:
    order = orders.get(db, order_id)
    status = Status(order["status"])
    if status in orders.UNPAID:
        moved = orders.move(db, order_id, orders.UNPAID, Status.CANCELLED)
        if moved is None:
            raise CannotCancel("the order changed while cancelling; try again")
        fulfilment.release_holds(db, moved)
        return Cancelled(str(Status.CANCELLED))
    if status == Status.CONFIRMED:
        paid = order.get("paid_payment_id")
        target = Status.REFUND_PENDING if paid else Status.CANCELLED
        moved = orders.move(db, order_id, Status.CONFIRMED, target,
                            detail={"payment_id": paid} if paid else None)
        if moved is None:
            raise CannotCancel("the order changed while cancelling; try again")
        for line in moved.get("lines", []):
            stock.restock(db, moved["store_id"], order_id, line["sku"], line["qty"])
        return Cancelled(str(target), paid)
    if status in {Status.ACCEPTED, Status.PROCESSING}:
        raise CannotCancel("the order is still being processed; try again in a moment")
    raise CannotCancel(f"a {status} order cannot be cancelled")


# --- sweeps -------------------------------------------------------------------------------


def expire_unpaid(db: Database, *, limit: int) -> list[str]:
    """Expire unpaid orders past their deadline and give their stock back."""
    due = db[orders.collections.ORDERS].find(
        {"status": {"$in": sorted(str(s) for s in orders.UNPAID)}, "pay_by_ms": {"$lt": now_ms()}}, {"_id": 1}
    ).limit(limit)
    expired = []
    for doc in list(due):
        moved = orders.move(db, doc["_id"], orders.UNPAID, Status.EXPIRED, guard={"pay_by_ms": {"$lt": now_ms()}})
        if moved is not None:
            fulfilment.release_holds(db, moved)
            expired.append(doc["_id"])
    return expired


def stale_attempts(db: Database, *, older_than_ms: int, limit: int) -> list[str]:
    """Attempts still created/authorized since before `older_than_ms`: to re-read from the gateway."""
    found = db[PAYMENTS].find(
        {"status": {"$in": [str(S.CREATED), str(S.AUTHORIZED)]}, "created_at_ms": {"$lt": older_than_ms}},
        {"_id": 1},
    ).limit(limit)
    return [doc["_id"] for doc in found]


def stalled_reservations(db: Database, *, older_than_ms: int, limit: int) -> list[tuple[str, int]]:
    """Orders reserved but with no gateway order yet (a lost create_order): (order id, attempt)."""
    found = db[orders.collections.ORDERS].find(
        {"status": str(Status.RESERVED), "updated_at_ms": {"$lt": older_than_ms}}, {"_id": 1, "payment_attempt": 1}
    ).limit(limit)
    return [(doc["_id"], int(doc.get("payment_attempt", 1))) for doc in found]


def gateway_customer(db: Database, gateway: Razorpay, user_id: str) -> str | None:
    """The customer's Razorpay customer id (for saved cards), created on first need."""
    user = db["users"].find_one({"_id": user_id}, {"email": 1, "razorpay_customer_id": 1})
    if user is None:
        return None
    if user.get("razorpay_customer_id"):
        return str(user["razorpay_customer_id"])
    created = gateway.create_customer(name=user["email"].split("@")[0], email=user["email"])
    db["users"].update_one({"_id": user_id, "razorpay_customer_id": {"$exists": False}},
                           {"$set": {"razorpay_customer_id": created["id"]}})
    return str(db["users"].find_one({"_id": user_id})["razorpay_customer_id"])
