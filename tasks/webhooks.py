"""webhooks queue: apply a stored Razorpay event to its payment."""

from __future__ import annotations

from kirana import db, webhooks
from tasks import leaderboards as loyalty_tasks
from tasks import notifications as notification_tasks
from tasks import payments as payment_tasks
from tasks import reliability
from tasks.app import app
from tasks.base import KiranaTask, publish_order_update


@app.task(name="webhooks.handle", base=KiranaTask, soft_time_limit=20, time_limit=30)
def handle(event_id: str) -> str:
    result = webhooks.handle(db.database(), event_id, publish=publish_order_update)
    # Follow-ups go through the outbox when the broker is down, like every enqueue after a write.
    if result.capture_payment_id:
        reliability.enqueue(payment_tasks.capture, [result.capture_payment_id])
    if result.refund_payment_id:
        reliability.enqueue(payment_tasks.refund, [result.refund_payment_id])
    if result.order_id:
        if result.order_status or result.outcome == "refunded":
            loyalty_tasks.order_changed(result.order_id)
        if result.outcome == "captured" and result.order_status == "confirmed":
            notification_tasks.order_event(result.order_id, "order_confirmed")
        elif result.outcome == "failed":
            notification_tasks.order_event(result.order_id, "payment_failed", attempt=result.payment_id)
        elif result.outcome == "refunded":
            notification_tasks.order_event(result.order_id, "refund_processed",
                                           amount_rupees=f"{(result.amount_paise or 0) / 100:.2f}")
    return result.outcome
