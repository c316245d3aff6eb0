"""Notifications: an outbox of messages to send, and the providers that send them.

Only the console provider exists yet (it writes the message to the worker's
log, for development); SMS, email and push providers come with the
notifications issue. A message is stored before it is enqueued, and sent at
most once: sending moves it from "queued" to "sent" with a compare-and-set.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from kirana.clock import now_ms, utcnow
from kirana.ids import new_id

NOTIFICATIONS = "notifications"
log = logging.getLogger(__name__)

TEMPLATES = {
    "login_otp": "Your Kirana login code is {code}. It expires in {minutes} minutes; do not share it.",
}


def queue(db: Database, *, user_id: str, channel: str, to: str | None, template: str,
          params: dict[str, Any]) -> str:
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}")
    notification_id = new_id("ntf")
    db[NOTIFICATIONS].insert_one({
        "_id": notification_id, "user_id": user_id, "channel": channel, "to": to, "template": template,
        "params": params, "status": "queued", "created_at": utcnow(), "created_at_ms": now_ms(),
        "updated_at_ms": now_ms(),
    })
    return notification_id


def deliver_to_console(db: Database, notification_id: str) -> str:
    """Send through the console provider; returns the status afterwards."""
    doc = db[NOTIFICATIONS].find_one({"_id": notification_id})
    if doc is None:
        return "missing"
    if doc["status"] != "queued":
        return str(doc["status"])
    text = TEMPLATES[doc["template"]].format(**doc["params"])
    sent = db[NOTIFICATIONS].find_one_and_update(
        {"_id": notification_id, "status": "queued"},
        # A one-time code has no business staying in the database once sent.
        {"$set": {"status": "sent", "provider": "console", "updated_at_ms": now_ms()}, "$unset": {"params": ""}},
        return_document=ReturnDocument.AFTER,
    )
    if sent is not None:
        log.warning("[console %s] to %s: %s", doc["channel"], doc["to"], text)
    return "sent"
