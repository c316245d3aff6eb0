"""audit queue: append events to the tamper-evident audit log (kirana.audit)."""

from __future__ import annotations

import logging
from typing import Any

import kombu.exceptions
import redis.exceptions

from kirana import audit, db
from tasks.app import app
from tasks.base import TRANSIENT, KiranaTask

log = logging.getLogger(__name__)

# What apply_async raises when the broker cannot take the message.
_BROKER_DOWN = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@app.task(
    name="audit.record",
    base=KiranaTask,
    soft_time_limit=10,
    time_limit=20,
    # Losing the race for the next seq 50 times in a row is contention, not a bug.
    autoretry_for=(*TRANSIENT, audit.AppendContention),
)
def record(event: dict[str, Any]) -> str:
    # Idempotent per event_id: a redelivered message returns the first entry.
    return str(audit.append(db.database(), event)["seq"])


def send(event: dict[str, Any]) -> None:
    """Record `event` on the audit queue; with the broker down, append it here and now.

    An audit write is never dropped silently: if the database is down too,
    the error reaches the caller.
    """
    try:
        record.apply_async(args=[event])
    except _BROKER_DOWN as exc:
        log.warning("broker unavailable (%s); appending audit event %s synchronously", exc, event.get("event_id"))
        audit.append(db.database(), event)
