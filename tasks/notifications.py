"""notifications queue: plan an event's notifications, and send each one once."""

from __future__ import annotations

import logging
from typing import Any

from kirana import db, notifications, outbox, providers, redis_conn, two_factor
from kirana.config import settings
from tasks.app import app
from tasks.base import TRANSIENT, KiranaTask


class NotificationTask(KiranaTask):
    abstract = True
    # A provider's 5xx or timeout is worth retrying; a 4xx is logged failed instead.
    autoretry_for = (*TRANSIENT, notifications.SendFailed)


log = logging.getLogger(__name__)

# A notification planned due now is stored leased to the run that sends it, for this long.
SEND_LEASE_MS = 60_000


@app.task(name="notifications.notify", base=NotificationTask, soft_time_limit=20, time_limit=30)
def notify(user_id: str, event: str, params: dict[str, Any], key: str) -> int:
    database = db.database()
    user = database["users"].find_one({"_id": user_id})
    if user is None:
        return 0
    ref = params.get("code_ref") if event in notifications.SECRET else None
    if ref is not None:
        # The code itself never travels in the task's arguments (kirana.two_factor.stash_sms_code).
        code = two_factor.stashed_sms_code(redis_conn.client(), str(ref))
        if code is None:
            log.warning("one-time code for %s expired before it could be sent", user_id)
            return 0
        params = {k: v for k, v in params.items() if k != "code_ref"} | {"code": code}
    planned = notifications.plan(database, user, event, params, key=key, lease_ms=SEND_LEASE_MS)
    if ref is not None:
        # Stored with its notification now (a retry sends that); the body is blanked once sent.
        two_factor.forget_stashed_sms_code(redis_conn.client(), str(ref))
    _send_planned(planned)
    return len(planned)


def _send_planned(planned: list[notifications.Planned]) -> None:
    """Send what is due now in this run (no message per notification); what is due later waits in the outbox.

    A transient provider failure on one channel does not stop the others: it is raised once
    they are tried, and the retry of this task sends what is still queued (`plan` returns it).
    """
    now = notifications.now_ms()
    later = [(p.doc["_id"], p.doc["due_at_ms"]) for p in planned if p.doc["due_at_ms"] > now + 1000]
    _send_when_due(later)
    failed: notifications.SendFailed | None = None
    for one in (p for p in planned if p.doc["due_at_ms"] <= now + 1000):
        try:
            _send(one)
        except notifications.SendFailed as exc:
            failed = failed or exc
    if failed is not None:
        raise failed


def _send(planned: notifications.Planned) -> str:
    database, cfg = db.database(), settings()
    try:
        outcome = notifications.send(
            database, redis_conn.client(), planned, providers.provider_for(planned.doc["channel"], cfg),
            per_recipient_per_hour=cfg.notify_per_recipient_per_hour,
            per_provider_per_second=cfg.notify_per_provider_per_second, lease_ms=SEND_LEASE_MS,
        )
    except notifications.RateLimited as limited:
        notifications.defer(database, planned.doc["_id"], limited.retry_at_ms)
        _send_when_due([(planned.doc["_id"], limited.retry_at_ms)])
        return "deferred"
    if outcome.status == "busy":
        # Leased by an earlier run of this trigger that died mid-send: try again once the lease is out.
        raise notifications.SendFailed(f"notification {planned.doc['_id']} is leased by an earlier run")
    return outcome.status


def _send_when_due(sends: list[tuple[str, int]]) -> None:
    from tasks.reliability import enqueue_many

    now = notifications.now_ms()
    due_now: list[tuple[str]] = []
    for nid, due_at_ms in sends:
        # A send due later (quiet hours, a rate limit) waits in the outbox, not as a long ETA.
        if due_at_ms > now + 1000:
            outbox.add(db.database(), "notifications.deliver", [nid], due_at_ms=due_at_ms, reason="due_later")
        else:
            due_now.append((nid,))
    # One pipelined round trip for all of a user's channels (outbox when the broker is down).
    enqueue_many(deliver, due_now)


@app.task(name="notifications.deliver", base=NotificationTask, soft_time_limit=20, time_limit=30)
def deliver(notification_id: str) -> str:
    """A notification sent on its own: one that waited (quiet hours, a rate limit) or an operator's resend."""
    doc = db.database()[notifications.NOTIFICATIONS].find_one({"_id": notification_id})
    if doc is None:
        return "missing"
    return _send(notifications.Planned(doc, leased=False))


def trigger(user_id: str, event: str, params: dict[str, Any], key: str) -> None:
    """Enqueue an event's notifications, after the state change it reports is stored."""
    from tasks.reliability import enqueue

    enqueue(notify, [user_id, event, params, key])


@app.task(name="notifications.order_event", base=NotificationTask, soft_time_limit=20, time_limit=30)
def order_event(order_id: str, event: str, params: dict[str, Any] | None = None) -> int:
    """Tell an order's customer that it moved (an order's follow-up, kirana.transitions).

    Keyed by (order, event, payment attempt), so twice is once. Plans in this run
    rather than enqueueing notifications.notify: one message per order event.
    """
    order = db.database()["orders"].find_one({"_id": order_id}, {"customer_id": 1, "total_paise": 1})
    if order is None:
        return 0
    params = params or {}
    # Refunds are in full: the amount refunded is the order's total.
    total = f"{(order.get('total_paise') or 0) / 100:.2f}"
    values = {"order_id": order_id, "total_rupees": total, "amount_rupees": total, **params}
    return int(notify(order["customer_id"], event, values, key=f"{order_id}:{event}:{params.get('attempt', '')}"))
