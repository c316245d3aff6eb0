"""payments queue: open a gateway order, capture exactly once, refund, reconcile, expire."""

from __future__ import annotations

from kirana import db, payments, webhooks
from kirana.clock import now_ms
from kirana.config import settings
from kirana.gateway import GatewayUnavailable, Razorpay
from tasks import dispatch, reliability
from tasks.app import app
from tasks.base import TRANSIENT, KiranaTask
from tasks.queues import DELIVERY, Queue
from tasks.reliability import run_once

# Above the gateway timeout, so a live capture never loses its lease.
CAPTURE_LEASE_MS = 30_000
SWEEP_BATCH = 200


def busy_countdown_s(lease_left_ms: int) -> int:
    """Seconds until a busy capture tries again: just past the holder's lease, within the queue's cap."""
    return min(lease_left_ms // 1000 + 1, DELIVERY[Queue.PAYMENTS].max_countdown_s)


class PaymentTask(KiranaTask):
    abstract = True
    # A gateway 5xx, timeout or connection error is worth retrying; a 4xx is not.
    autoretry_for = (*TRANSIENT, GatewayUnavailable)


@app.task(name="payments.create_order", base=PaymentTask, soft_time_limit=30, time_limit=40)
def create_order(order_id: str, attempt: int) -> str:
    database = db.database()
    gateway = Razorpay()
    order = payments.orders.get(database, order_id)
    customer = payments.gateway_customer(database, gateway, order["customer_id"])
    moved = payments.open_attempt(database, gateway, order_id, attempt, customer_id=customer, order=order)
    dispatch.send(moved)  # its live update
    return "awaiting_payment" if moved else "skipped"


@app.task(name="payments.capture", base=PaymentTask, bind=True, soft_time_limit=30, time_limit=40)
def capture(self: PaymentTask, payment_id: str) -> str:
    result = payments.capture(db.database(), Razorpay(), payment_id, lease_ms=CAPTURE_LEASE_MS,
                              owner=self.request.id)
    if result.retry_in_ms is not None:
        # Busy: another run holds the lease. Come back when it lapses, in case that run died with it.
        raise self.retry(countdown=busy_countdown_s(result.retry_in_ms))
    if result.settled and result.settled.refund:
        # Captured for an order that no longer wants it: the payment's follow-up, not an order move.
        reliability.enqueue(refund, [payment_id])
    if result.settled and result.settled.order is not None:
        dispatch.send(result.settled.order)  # the confirming move recorded its follow-ups
    elif result.settled or result.outcome == "failed":
        # The order's move (payment_failed) recorded its follow-ups.
        dispatch.send_for(db.database(), payment_id.rsplit(":p", 1)[0])
    return result.outcome


@app.task(name="payments.refund", base=PaymentTask, soft_time_limit=30, time_limit=40)
def refund(payment_id: str) -> str:
    return payments.refund(db.database(), Razorpay(), payment_id)


@app.task(name="payments.reconcile", base=PaymentTask, soft_time_limit=50, time_limit=60)
@run_once("payments.reconcile", ttl_s=90)
def reconcile() -> dict[str, int]:
    """Drive forward what webhooks should have: Razorpay says webhooks can be late or lost."""
    database = db.database()
    older = now_ms() - settings().payment_reconcile_after_s * 1000
    stale = payments.stale_attempts(database, older_than_ms=older, limit=SWEEP_BATCH)
    for payment_id in stale:
        capture.delay(payment_id)  # re-reads from Razorpay, then captures, confirms or fails
    stalled = payments.stalled_reservations(database, older_than_ms=now_ms() - 30_000, limit=SWEEP_BATCH)
    for order_id, attempt in stalled:
        create_order.delay(order_id, attempt)
    from tasks.webhooks import handle

    lost = webhooks.unhandled(database, older_than_ms=now_ms() - 30_000, limit=SWEEP_BATCH)
    for event_id in lost:
        handle.delay(event_id)
    return {"payments": len(stale), "reservations": len(stalled), "webhooks": len(lost)}


@app.task(name="payments.expire_unpaid", base=PaymentTask, soft_time_limit=50, time_limit=60)
@run_once("payments.expire_unpaid", ttl_s=90)
def expire_unpaid() -> int:
    database = db.database()
    expired = payments.expire_unpaid(database, limit=SWEEP_BATCH)
    for order_id in expired:
        dispatch.send_for(database, order_id)  # redeemed points go back, the stock is searchable again
    return len(expired)
