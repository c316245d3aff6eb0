"""The outbox: work to enqueue that could not reach the broker when it was written.

The API stores the order, tries to enqueue, and when the broker is down
stores an outbox entry instead and still answers 202. A relay process sends
pending entries oldest first once the broker is back. An entry may also be
due later (`due_at_ms`): long delays are stored here rather than held by a
worker as a long ETA. Sending twice is harmless (every task is idempotent),
losing one is not, so an entry is marked sent only after the send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.database import Database

from kirana.clock import now_ms, utcnow
from kirana.dead_letters import concerns
from kirana.ids import new_id

OUTBOX = "outbox"


def add(db: Database, task: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None, *,
        queue: str | None = None, due_at_ms: int | None = None, reason: str = "broker_unavailable",
        request_id: str | None = None, task_id: str | None = None) -> str:
    entry_id = new_id("obx")
    now = now_ms()
    db[OUTBOX].insert_one({
        "_id": entry_id, "task": task, "args": list(args), "kwargs": dict(kwargs or {}), "queue": queue,
        "status": "pending", "due_at_ms": due_at_ms or now, "reason": reason, "attempts": 0,
        # Sent on with the task when the relay publishes it, to keep the request traceable.
        "request_id": request_id,
        # A dispatched follow-up keeps its deterministic id (tasks/dispatch.py); others get a new one.
        **({"send_task_id": task_id} if task_id else {}),
        "created_at": utcnow(), "created_at_ms": now, "updated_at_ms": now, **concerns(args),
    })
    return entry_id


def due(db: Database, *, limit: int, at_ms: int | None = None) -> list[dict[str, Any]]:
    """Pending entries that are due, oldest first."""
    at = at_ms if at_ms is not None else now_ms()
    found = db[OUTBOX].find({"status": "pending", "due_at_ms": {"$lte": at}}).sort("due_at_ms", 1).limit(limit)
    return list(found)


def mark_sent(db: Database, entry_id: str, task_id: str) -> bool:
    done = db[OUTBOX].update_one({"_id": entry_id, "status": "pending"},
                                 {"$set": {"status": "sent", "task_id": task_id, "sent_at_ms": now_ms(),
                                           "updated_at_ms": now_ms()}})
    return done.modified_count == 1


def note_failure(db: Database, entry_id: str, error: str) -> None:
    db[OUTBOX].update_one({"_id": entry_id}, {"$inc": {"attempts": 1},
                                              "$set": {"last_error": error[:500], "updated_at_ms": now_ms()}})


def backlog(db: Database) -> int:
    return db[OUTBOX].count_documents({"status": "pending"})
