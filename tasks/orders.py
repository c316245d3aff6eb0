"""orders queue: take an accepted order to confirmed or rejected."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pymongo.errors
from pymongo.database import Database

from kirana import audit, db, deliveries, fulfilment, orders, payments
from kirana.clock import now_ms
from kirana.config import settings
from tasks import audit as audit_task
from tasks import leaderboards as loyalty_tasks
from tasks import notifications as notification_tasks
from tasks import payments as payment_tasks
from tasks import reliability
from tasks import search as search_tasks
from tasks.app import app
from tasks.base import TRANSIENT, KiranaTask, publish_order_update
from tasks.reliability import run_once

log = logging.getLogger(__name__)

SOFT_LIMIT_S = 20
HARD_LIMIT_S = 30
# The claim outlives the hard limit, so a live run never loses its order.
LEASE_MS = 2 * HARD_LIMIT_S * 1000
SWEEP_BATCH = 500


@app.task(name="orders.process", base=KiranaTask, bind=True, soft_time_limit=SOFT_LIMIT_S,
          time_limit=HARD_LIMIT_S)
def process(self: KiranaTask, order_id: str, claim_token: str | None = None) -> str:
    # A fresh claim token per delivery (two live deliveries of one message must not
    # share a claim), kept by this run's retries: a run that claimed the order and
    # failed transiently could not always give its claim up (MongoDB down), and its
    # retry must find the claim its own instead of waiting for the lease to run out.
    token = claim_token or uuid.uuid4().hex
    try:
        outcome = fulfilment.process_order(db.database(), order_id, lease_ms=LEASE_MS,
                                           pay_within_ms=settings().payment_expiry_s * 1000,
                                           publish=publish_order_update, claim_token=token)
    except TRANSIENT:
        # KiranaTask's autoretry re-sends this request's kwargs: the retry carries the token.
        self.request.kwargs = {**(self.request.kwargs or {}), "claim_token": token}
        raise
    except orders.OrderNotFound:
        # Withdrawn by the API after a failed enqueue whose message got through.
        log.warning("order %s not found; nothing to do", order_id)
        return "missing"
    if outcome.status == orders.Status.RESERVED:
        # Also when this run found it reserved already: a run that reserved and then
        # failed to enqueue (broker down) is retried, and the follow-on must still go.
        # create_order is idempotent; with the broker down it waits in the outbox.
        attempt = int(orders.get(db.database(), order_id).get("payment_attempt", 1))
        reliability.enqueue(payment_tasks.create_order, [order_id, attempt])
    if outcome.acted:
        # Stock moved, so in_stock may have: one coalesced indexer run (the search sweep is the safety net).
        search_tasks.request_indexing_quietly()
    if outcome.status in {orders.Status.CONFIRMED, orders.Status.REJECTED}:
        # Points (or points given back), also when a redelivery finds the order moved: syncing is idempotent.
        loyalty_tasks.order_changed(order_id)
    if outcome.acted and outcome.status == orders.Status.CONFIRMED:
        notification_tasks.order_event(order_id, "order_confirmed")
    if outcome.acted and outcome.status == orders.Status.REJECTED:
        notification_tasks.order_event(order_id, "order_rejected", reason=outcome.reason or "unknown")
    return outcome.status


def submit(database: Database, new: orders.NewOrder, key: str | None) -> tuple[dict[str, Any], bool]:
    """Store an accepted order and hand it to the orders pool; (order, created).

    The one way an order enters: POST /api/v1/orders, a cart's checkout and an
    offline-synced submission all come through here. With the broker down the
    work waits in the outbox. When neither broker nor outbox took it, the order
    is withdrawn (so a retry with the same key starts clean) and the MongoDB
    error propagates.
    """
    order, created = orders.place(database, new, idempotency_key=key, publish=publish_order_update)
    if created:
        try:
            reliability.enqueue(process, [order["_id"]])
        except pymongo.errors.PyMongoError:
            orders.withdraw(database, order["_id"])
            raise
        notification_tasks.trigger(order["customer_id"], "order_accepted", {"order_id": order["_id"]},
                                   key=f"{order['_id']}:order_accepted:")
    return order, created


def cancel(database: Database, order_id: str, *, actor: str, ip: str | None = None) -> payments.Cancelled:
    """Cancel an order (raises payments.CannotCancel), refund what was paid, and audit it."""
    done = payments.cancel(database, order_id, publish=publish_order_update)
    if done.refund_payment_id:
        reliability.enqueue(payment_tasks.refund, [done.refund_payment_id])
    loyalty_tasks.order_changed(order_id)  # earned points reversed, redeemed points given back
    audit_task.send(audit.new_event("order.cancelled", actor=actor, target=order_id,
                                    detail={"status": done.status, "refund_payment_id": done.refund_payment_id},
                                    ip=ip))
    return done


@app.task(name="orders.requeue_stuck", base=KiranaTask, soft_time_limit=20, time_limit=30)
@run_once("orders.requeue_stuck", ttl_s=90)
def requeue_stuck(rounds_left: int = 10) -> int:
    older_than = now_ms() - settings().stuck_order_after_s * 1000
    stuck = orders.stuck(db.database(), older_than, SWEEP_BATCH)
    for order_id in stuck:
        process.delay(order_id)
    # A full batch means there may be more: sweep again, up to a cap.
    if len(stuck) == SWEEP_BATCH and rounds_left > 1:
        requeue_stuck.delay(rounds_left - 1)
    return len(stuck)


@app.task(name="orders.record_location", base=KiranaTask, soft_time_limit=10, time_limit=20)
def record_location(order_id: str, rider_id: str, lat: float, lng: float, at_ms: int) -> str:
    deliveries.record_location(db.database(), order_id, rider_id, lat=lat, lng=lng, at_ms=at_ms)
    return "stored"
