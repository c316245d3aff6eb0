"""Notifications: who hears about what, on which channel, once.

`plan` turns an event for a user into one notification per channel, from
the user's preferences (channels, language, quiet hours), rendered from the
event's template. Its id comes from the trigger's key and the channel, so a
trigger that runs twice plans nothing new. `send` sends one notification
through its provider under a lease (the one its insert took, or its own),
records every attempt in an insert-only log, and leaves the notification
sent, failed (4xx: will not work by trying again) or queued for a retry
(5xx, timeouts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import redis
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from kirana import devices, templates
from kirana.clock import now_ms, utcnow
from kirana.providers import Delivery, Message, Provider

NOTIFICATIONS = "notifications"
ATTEMPTS = "notification_attempts"
PREFERENCES = "notification_preferences"

CHANNELS = ("sms", "email", "push", "in_app")
# These reach the user even in quiet hours.
URGENT = frozenset({"login_otp", "payment_failed"})
# Events that go only to some channels whatever the preferences say.
ONLY: Mapping[str, tuple[str, ...]] = {"login_otp": ("sms",), "welcome": ("email",), "account_exists": ("email",)}
# Events whose text must not stay in the database once sent.
SECRET = frozenset({"login_otp"})
DUPLICATE_KEY = 11000


@dataclass
class Preferences:
    channels: dict[str, bool] = field(default_factory=lambda: {"sms": False, "email": True, "push": True,
                                                                "in_app": True})
    language: str = "en"
    quiet_start: str | None = None  # "22:00"
    quiet_end: str | None = None  # "07:00"
    timezone: str = "Asia/Kolkata"
    push_token: str | None = None


def get_preferences(db: Database, user_id: str) -> Preferences:
    doc = db[PREFERENCES].find_one({"_id": user_id}) or {}
    prefs = Preferences()
    for name in ("language", "quiet_start", "quiet_end", "timezone", "push_token"):
        if name in doc:
            setattr(prefs, name, doc[name])
    prefs.channels.update(doc.get("channels", {}))
    return prefs


def set_preferences(db: Database, user_id: str, prefs: Preferences) -> Preferences:
    db[PREFERENCES].update_one({"_id": user_id}, {"$set": {**asdict(prefs), "updated_at_ms": now_ms()}},
                               upsert=True)
    return get_preferences(db, user_id)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def quiet_until_ms(prefs: Preferences, at_ms: int) -> int | None:
    """When the user's quiet hours end, if `at_ms` falls inside them; else None."""
    if not prefs.quiet_start or not prefs.quiet_end:
        return None
    zone = ZoneInfo(prefs.timezone)
    local = dt.datetime.fromtimestamp(at_ms / 1000, zone)
    now_min, start, end = local.hour * 60 + local.minute, _minutes(prefs.quiet_start), _minutes(prefs.quiet_end)
    inside = start <= now_min < end if start < end else (now_min >= start or now_min < end)
    if not inside:
        return None
    end_today = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if end_today <= local:
        end_today += dt.timedelta(days=1)
    return int(end_today.timestamp() * 1000)


def notification_id(key: str, channel: str) -> str:
    return "ntf_" + hashlib.sha256(f"{key}|{channel}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Planned:
    """A notification to send: `leased` when this run stored it leased to itself (send it as is)."""

    doc: dict[str, Any]
    leased: bool


def plan(db: Database, user: Mapping[str, Any], event: str, params: Mapping[str, Any], *, key: str,
         at_ms: int | None = None, lease_ms: int = 0) -> list[Planned]:
    """Store this event's notifications for `user` in one insert; the ones that need sending.

    With `lease_ms`, a notification due now is stored already leased to the caller for that
    long: the insert that creates it is its claim, and the caller sends it (`send`) with no
    further read or write first. A trigger that runs again (a redelivery, a retry) stores
    nothing new; it gets back what an earlier run stored and left queued, unleased, to send
    under a lease of its own (`send` takes it).
    """
    at = at_ms if at_ms is not None else now_ms()
    prefs = get_preferences(db, user["_id"])
    channels = ONLY.get(event) or tuple(c for c in CHANNELS if prefs.channels.get(c) or c == "in_app")
    subject, body = templates.render(event, prefs.language, params)
    due = at if event in URGENT else (quiet_until_ms(prefs, at) or at)
    destinations = {"email": [("", user.get("email"))], "sms": [("", user.get("phone"))],
                    "push": _push_destinations(db, user["_id"], prefs), "in_app": [("", user["_id"])]}
    docs = []
    for channel, (device_id, to) in ((c, d) for c in channels for d in destinations[c]):
        if not to:
            continue  # no phone, no device: nothing to send on that channel
        leased = bool(lease_ms) and channel != "in_app" and due <= at
        docs.append({
            "_id": notification_id(key, f"{channel}:{device_id}" if device_id else channel), "key": key,
            "user_id": user["_id"], "event": event, **({"device_id": device_id} if device_id else {}),
            "channel": channel, "to": to, "subject": subject, "body": body, "language": prefs.language,
            "status": "sent" if channel == "in_app" else "queued", "due_at_ms": due, "attempts": int(leased),
            "lease_until_ms": at + lease_ms if leased else 0, "created_at": utcnow(), "created_at_ms": at,
            "updated_at_ms": at,
        })
    if not docs:
        return []
    try:
        db[NOTIFICATIONS].insert_many(docs, ordered=False)
        stored, earlier = docs, []
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        taken = {error["index"] for error in errors}
        stored = [doc for i, doc in enumerate(docs) if i not in taken]
        # Only a trigger run again gets here: read what the earlier run stored, by id.
        earlier = [found for i in sorted(taken)
                   if (found := db[NOTIFICATIONS].find_one({"_id": docs[i]["_id"], "status": "queued"}))]
    return ([Planned(doc, leased=doc["lease_until_ms"] > 0) for doc in stored if doc["channel"] != "in_app"]
            + [Planned(doc, leased=False) for doc in earlier])


def _push_destinations(db: Database, user_id: str, prefs: Preferences) -> list[tuple[str, str | None]]:
    """One push per registered device; the single token of the preferences when none is registered."""
    return list(devices.push_targets(db, user_id)) or [("", prefs.push_token)]


def _after_push(db: Database, doc: Mapping[str, Any], result: Delivery) -> None:
    """Keep the device list true to what the push provider says about a token."""
    if doc["channel"] != "push":
        return
    if not result.ok and "invalid_token" in result.response:
        devices.forget_token(db, doc["to"])
        db[PREFERENCES].update_one({"_id": doc["user_id"], "push_token": doc["to"]}, {"$set": {"push_token": None}})
    elif result.ok and "canonical_token=" in result.response:
        devices.replace_token(db, doc["to"], result.response.split("canonical_token=", 1)[1].split()[0])


class RateLimited(Exception):
    def __init__(self, retry_at_ms: int, why: str) -> None:
        super().__init__(why)
        self.retry_at_ms = retry_at_ms


class SendFailed(Exception):
    """A transient provider failure: retry later."""


def _check_rates(r: redis.Redis, doc: Mapping[str, Any], provider: str, *, per_recipient_per_hour: int,
                 per_provider_per_second: int, at_ms: int) -> None:
    hour, second = at_ms // 3_600_000, at_ms // 1000
    recipient = hashlib.sha256(f"{doc['channel']}:{doc['to']}".encode()).hexdigest()[:24]
    pipe = r.pipeline(transaction=False)
    pipe.incr(f"kirana:rl:rcpt:{recipient}:{hour}")
    pipe.expire(f"kirana:rl:rcpt:{recipient}:{hour}", 3700)
    pipe.incr(f"kirana:rl:prov:{provider}:{second}")
    pipe.expire(f"kirana:rl:prov:{provider}:{second}", 5)
    per_recipient, _, per_provider, _ = pipe.execute()
    if int(per_provider) > per_provider_per_second:
        raise RateLimited((second + 1) * 1000, f"{provider} is at its {per_provider_per_second}/s limit")
    if int(per_recipient) > per_recipient_per_hour and doc["event"] not in URGENT:
        raise RateLimited((hour + 1) * 3_600_000, f"recipient is at its {per_recipient_per_hour}/h limit")


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | failed | already_<status> | not_due | busy
    delivery: Delivery | None = None


def send(db: Database, r: redis.Redis, planned: Planned, provider: Provider, *, per_recipient_per_hour: int,
         per_provider_per_second: int, lease_ms: int = 60_000) -> Outcome:
    """Send one notification once: under the lease its insert took (`planned.leased`), or one taken here."""
    doc, nid = planned.doc, planned.doc["_id"]
    if doc["status"] != "queued":
        return Outcome(f"already_{doc['status']}")
    at = now_ms()
    if doc["due_at_ms"] > at:
        return Outcome("not_due")
    _check_rates(r, doc, provider.name, per_recipient_per_hour=per_recipient_per_hour,
                 per_provider_per_second=per_provider_per_second, at_ms=at)
    if not planned.leased:
        leased = db[NOTIFICATIONS].find_one_and_update(
            {"_id": nid, "status": "queued", "lease_until_ms": {"$lt": at}},
            {"$set": {"lease_until_ms": at + lease_ms}, "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if leased is None:
            return Outcome("busy")  # another run is sending it right now
    result = provider.send(Message(nid, doc["channel"], doc["to"], doc.get("subject"), doc["body"],
                                   doc.get("language", "en")))
    db[ATTEMPTS].insert_one({"notification_id": nid, "user_id": doc["user_id"], "at_ms": now_ms(),
                             "ok": result.ok, "retryable": result.retryable, "provider": result.provider,
                             "response": result.response[:500], "created_at": utcnow()})
    _after_push(db, doc, result)
    finished: dict[str, Any] = {"provider": result.provider, "response": result.response[:500],
                                "updated_at_ms": now_ms()}
    if doc["event"] in SECRET:
        finished["body"] = "(one-time code: removed once sent)"
    if result.ok:
        db[NOTIFICATIONS].update_one({"_id": nid}, {"$set": {**finished, "status": "sent", "sent_at_ms": now_ms()}})
        return Outcome("sent", result)
    if not result.retryable:
        db[NOTIFICATIONS].update_one({"_id": nid}, {"$set": {**finished, "status": "failed"}})
        return Outcome("failed", result)
    db[NOTIFICATIONS].update_one({"_id": nid}, {"$set": {"lease_until_ms": 0, "response": result.response[:500]}})
    raise SendFailed(f"{result.provider}: {result.response}")


def defer(db: Database, nid: str, until_ms: int) -> None:
    """Not before `until_ms` (a rate limit): the lease its insert took, if any, is let go."""
    db[NOTIFICATIONS].update_one({"_id": nid, "status": "queued"},
                                 {"$set": {"due_at_ms": until_ms, "lease_until_ms": 0, "updated_at_ms": now_ms()}})


def inbox(db: Database, user_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The user's notifications, newest first, each with its delivery log."""
    filters = {"user_id": user_id}
    docs = list(db[NOTIFICATIONS].find(filters).sort("created_at_ms", -1).skip(offset).limit(limit))
    items = []
    for doc in docs:
        log = sorted(db[ATTEMPTS].find({"notification_id": doc["_id"]}), key=lambda a: a["at_ms"])
        items.append({
            "id": doc["_id"], "event": doc["event"], "channel": doc["channel"], "subject": doc.get("subject"),
            "body": doc["body"], "status": doc["status"], "read": bool(doc.get("read_at_ms")),
            "created_at_ms": doc["created_at_ms"], "due_at_ms": doc["due_at_ms"],
            "log": [{"at_ms": a["at_ms"], "ok": a["ok"], "provider": a["provider"], "response": a["response"]}
                    for a in log],
        })
    return items, db[NOTIFICATIONS].count_documents(filters)


def mark_read(db: Database, user_id: str, nid: str) -> bool:
    done = db[NOTIFICATIONS].update_one({"_id": nid, "user_id": user_id},
                                        {"$set": {"read_at_ms": now_ms(), "updated_at_ms": now_ms()}})
    return done.matched_count == 1
