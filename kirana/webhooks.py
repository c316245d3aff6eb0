"""Razorpay webhooks: stored once on arrival, handled later on the webhooks queue.

The endpoint only checks the signature and inserts the event under its
Razorpay event id (a duplicate delivery finds it there and is not enqueued
again). Handling maps each event onto the payment attempt it concerns;
payment states only move forward (kirana.payments.ADVANCES_FROM), so events
arriving out of order cannot undo each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kirana import payments
from kirana.clock import now_ms, utcnow

EVENTS = payments.WEBHOOK_EVENTS
DUPLICATE_KEY = 11000


class BadEvent(ValueError):
    pass


def prepare(body: bytes, event_id: str | None) -> dict[str, Any]:
    """The document to store for a webhook body. Raises BadEvent for a body that is not an event."""
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadEvent("the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise BadEvent("the body is not a Razorpay event")
    # Razorpay always sends x-razorpay-event-id; without it, the body itself names the event.
    key = event_id or "sha256:" + hashlib.sha256(body).hexdigest()
    return {"_id": key, "dedupe_key": dedupe_key(event, body), "event": event["event"], "body": body.decode(),
            "status": "received", "received_at": utcnow(), "received_at_ms": now_ms()}


def dedupe_key(event: dict[str, Any], body: bytes) -> str:
    """What the signed body says happened: the event, its entity's id and status (unique per event).

    The event-id header is not covered by the signature, so the same signed body re-posted under a
    new event id must still be a duplicate. A body naming no entity is keyed by its own hash.
    """
    payload = event.get("payload")
    if isinstance(payload, dict):
        for name in sorted(payload):
            entity = payload[name].get("entity") if isinstance(payload[name], dict) else None
            if isinstance(entity, dict) and isinstance(entity.get("id"), str):
                return f"{event['event']}:{name}:{entity['id']}:{entity.get('status', '')}"
    return f"{event['event']}:sha256:{hashlib.sha256(body).hexdigest()}"


def store_many(db: Database, docs: list[dict[str, Any]]) -> list[bool]:
    """Insert prepared events in one round trip; for each, whether it was stored now (False: a duplicate).

    Unordered, so one duplicate does not stop the rest. Any error other than
    a duplicate key is raised: then nothing is known to be stored, and the
    callers answer 503 so that Razorpay sends again (stored ones come back
    as duplicates).
    """
    if not docs:
        return []
    stored = [True] * len(docs)
    try:
        db[EVENTS].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        for error in errors:
            stored[error["index"]] = False
    return stored


def store(db: Database, body: bytes, event_id: str | None) -> tuple[str, bool]:
    """Insert one event; returns (event id, stored-now). Raises BadEvent for a body that is not an event."""
    doc = prepare(body, event_id)
    try:
        db[EVENTS].insert_one(doc)
    except DuplicateKeyError:
        return doc["_id"], False
    return doc["_id"], True


@dataclass(frozen=True)
class Handled:
    outcome: str
    capture_payment_id: str | None = None
    refund_payment_id: str | None = None
    # The attempt the event concerned, for the notifications that follow.
    payment_id: str | None = None
    order_id: str | None = None
    order_status: str | None = None
    amount_paise: int | None = None


def _entity(event: dict[str, Any], name: str) -> dict[str, Any] | None:
    return (event.get("payload", {}).get(name) or {}).get("entity")


def stored_events(db: Database, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored events of a batch, by id, read at once (one query instead of one per event)."""
    return {doc["_id"]: doc for doc in db[EVENTS].find({"_id": {"$in": event_ids}})}


def handle(db: Database, event_id: str, *,
           stored: dict[str, Any] | None = None) -> Handled:
    """Apply one stored event to its payment; `stored`: the event as already read (stored_events)."""
    if stored is None:
        stored = db[EVENTS].find_one({"_id": event_id})
    if stored is None:
        return Handled("missing")
    if stored["status"] != "received":
        return Handled(f"already_{stored['status']}")
    event = json.loads(stored["body"])
    kind = event["event"]
    result = _dispatch(db, kind, event)
    db[EVENTS].update_one({"_id": event_id, "status": "received"},
                          {"$set": {"status": "handled" if result.outcome != "ignored" else "ignored",
                                    "outcome": result.outcome, "handled_at_ms": now_ms()}})
    return result


def _dispatch(db: Database, kind: str, event: dict[str, Any]) -> Handled:
    payment = _entity(event, "payment")
    if kind == "refund.processed":
        refund = _entity(event, "refund") or {}
        rzp_payment_id = refund.get("payment_id") or (payment or {}).get("id", "")
        done = payments.refund_processed(db, rzp_payment_id, refund)
        attempt = db[payments.PAYMENTS].find_one({"razorpay_payment_id": rzp_payment_id}) or {}
        return Handled("refunded" if done else "refund_unmatched", payment_id=attempt.get("_id"),
                       order_id=attempt.get("order_id"), amount_paise=refund.get("amount"))
    if kind not in PAYMENT_EVENTS or payment is None:
        return Handled("ignored")
    # Only the gateway order the event names is taken from it, to find the attempt. What happened
    # to the payment is asked of Razorpay by the capture task (kirana.payments.capture reads the
    # gateway order's payments, then captures, marks captured or failed as Razorpay says): a
    # signed body proves only that someone holds the webhook secret, and a stale or replayed one
    # is signed too. Nothing about the payment is written from the body.
    attempt = payments.by_gateway_order(db, payment.get("order_id", ""))
    if attempt is None:
        return Handled("unknown_payment")
    return Handled("to_reconcile", capture_payment_id=attempt["_id"])


# Events about a payment's state: each makes the attempt be re-read from Razorpay.
PAYMENT_EVENTS = frozenset({"payment.authorized", "payment.captured", "payment.failed", "order.paid"})


def unhandled(db: Database, *, older_than_ms: int, limit: int) -> list[str]:
    """Events stored but not handled (their enqueue was lost): to enqueue again."""
    found = db[EVENTS].find({"status": "received", "received_at_ms": {"$lt": older_than_ms}}, {"_id": 1}).limit(limit)
    return [doc["_id"] for doc in found]
