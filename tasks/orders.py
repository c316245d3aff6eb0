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
from tasks import dispatch, faults
from tasks.app import app
from tasks.base import TRANSIENT, KiranaTask
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
                                           pay_within_ms=settings().payment_expiry_s * 1000, claim_token=token)
    except TRANSIENT:
        # KiranaTask's autoretry re-sends this request's kwargs: the retry carries the token.
        self.request.kwargs = {**(self.request.kwargs or {}), "claim_token": token}
        raise
    except orders.OrderNotFound:
        log.warning("order %s not found; nothing to do", order_id)
        return "missing"
    if outcome.busy_until_ms:
        # Another run holds the lease. Alive (a duplicate delivery), it finishes the order; dead (its
        # worker was killed and this is the redelivery), its lease runs out. Either way come back
        # then, rather than leave a dead run's order to beat's stuck-order sweep.
        wait_s = (outcome.busy_until_ms - now_ms()) / 1000 + 1
        raise self.retry(countdown=min(max(wait_s, 1.0), self.retry_backoff_max), kwargs={})
    # The move recorded its follow-ups (kirana.transitions); a redelivery that finds the order
    # moved gets it with whatever a run that died after its write left unsent.
    dispatch.send(outcome.order)
    return outcome.status


def submit(database: Database, new: orders.NewOrder, key: str | None) -> tuple[dict[str, Any], bool]:
    """Store an accepted order with its follow-ups, then hand them on; (order, created).

    The one way an order enters: POST /api/v1/orders, a cart's checkout and an
    offline-synced submission all come through here. The insert is the one
    write that matters: it records the order with its processing and its
    "accepted" notification, so once it is stored its work cannot be lost. The
    dispatch after it is best effort (the broker, or the outbox when the broker
    is down; the dispatch sweep when neither answered). A replay of the same
    key sends what its first request could not (its insert's answer was lost).
    """
    order, created = orders.place(database, new, idempotency_key=key)
    if created and faults.hit(faults.LOSE_INSERT_REPLY):
        raise pymongo.errors.AutoReconnect("fault injected: the insert landed and its reply was lost")
    dispatch.send_quietly(order)
    return order, created


def cancel(database: Database, order_id: str, *, actor: str, ip: str | None = None) -> payments.Cancelled:
    """Cancel an order (raises payments.CannotCancel), refund what was paid, and audit it."""
    done = payments.cancel(database, order_id)
    # The refund of a paid order, its points, its search marks: recorded with the move.
    dispatch.send_for(database, order_id)
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
