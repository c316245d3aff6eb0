"""webhooks queue: apply stored Razorpay events to their payments."""

from __future__ import annotations

import logging
from typing import Any

from kirana import db, webhooks
from tasks import dispatch, reliability
from tasks import notifications as notification_tasks
from tasks import payments as payment_tasks
from tasks.app import app
from tasks.base import TRANSIENT, KiranaTask

log = logging.getLogger(__name__)


@app.task(name="webhooks.handle", base=KiranaTask, soft_time_limit=20, time_limit=30)
def handle(event_id: str) -> str:
    return _handle(event_id)


# Its limit plus the longest retry countdown stays under the webhooks queue's 60 s visibility
# timeout, or a slow batch would be delivered twice. 200 events take well under a second.
@app.task(name="webhooks.handle_many", base=KiranaTask, soft_time_limit=25, time_limit=35)
def handle_many(event_ids: list[str]) -> dict[str, int]:
    """The events one group commit stored (api/webhooks.py), in arrival order.

    An event that fails is handed to its own `webhooks.handle` task, with that
    task's retries and dead letter, so one bad event neither blocks nor
    repeats the others (handling is idempotent either way).
    """
    handled = failed = 0
    stored = webhooks.stored_events(db.database(), event_ids)
    for event_id in event_ids:
        try:
            _handle(event_id, stored.get(event_id))
            handled += 1
        except TRANSIENT:
            raise  # the database or broker is away: retry the whole batch (handled ones are no-ops)
        except Exception:
            log.exception("webhook event %s failed; retrying it on its own", event_id)
            reliability.enqueue(handle, [event_id])
            failed += 1
    return {"handled": handled, "failed": failed}


def _handle(event_id: str, stored: dict[str, Any] | None = None) -> str:
    result = webhooks.handle(db.database(), event_id, stored=stored)
    # Follow-ups go through the outbox when the broker is down, like every enqueue after a write.
    if result.capture_payment_id:
        reliability.enqueue(payment_tasks.capture, [result.capture_payment_id])
    if result.refund_payment_id:
        reliability.enqueue(payment_tasks.refund, [result.refund_payment_id])
    if result.order_id:
        # The order's move (confirmed, payment_failed, refunded) recorded its follow-ups.
        dispatch.send_for(db.database(), result.order_id)
        if result.outcome == "refunded":
            # Also a refund of a payment whose order did not move (captured after the order expired):
            # the customer hears of their money either way; keyed per order, so once.
            reliability.enqueue(notification_tasks.order_event, [result.order_id, "refund_processed", {}])
    return result.outcome
