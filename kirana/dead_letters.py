"""Dead letters: work that gave up, kept for ops to look at, replay or discard.

A task that exhausts its retries, fails with an error retrying would not
fix, or keeps killing its worker lands here with everything needed to run it
again. A discarded or replayed letter is only marked so; the bounded-storage
prune (kirana.retention) deletes closed ones past their retention.

Ops act on one letter, or on every open letter a `Selection` matches (task,
error class, queue, a time range of the last failure): a dry run counts them
and shows a sample, a bulk discard closes them in one write, a bulk replay is
paced by its caller (tasks.reliability.replay_selection).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana.clock import now_ms, utcnow
from kirana.ids import new_id

DEAD_LETTERS = "dead_letters"

OPEN, REPLAYED, DISCARDED = "open", "replayed", "discarded"

# The audit actions of a bulk action (one entry each, with the selection and the count): the API
# and the CLI write the same ones.
BULK_DISCARDED, BULK_REPLAYED = "dead_letters.discarded_bulk", "dead_letters.replay_bulk"

_ORDER_ID = re.compile(r"^(ord_[0-9A-Z]{26})(?::p\d+)?$")


class NotFound(Exception):
    pass


class AlreadyClosed(Exception):
    def __init__(self, letter_id: str, status: str) -> None:
        super().__init__(f"dead letter {letter_id} is {status}")
        self.status = status


def concerns(args: Sequence[Any]) -> dict[str, str]:
    """The order and payment a task's arguments name, if any."""
    found: dict[str, str] = {}
    for arg in args:
        if isinstance(arg, str) and (match := _ORDER_ID.match(arg)):
            found.setdefault("order_id", match.group(1))
            if ":p" in arg:
                found.setdefault("payment_id", arg)
    return found


def record(db: Database, *, task_id: str, task: str, args: Sequence[Any], kwargs: Mapping[str, Any],
           queue: str | None, exc_type: str, message: str, traceback: str, attempts: int,
           reason: str) -> dict[str, Any]:
    """Record a failure of `task_id`; a second failure of the same task id updates the letter."""
    now = now_ms()
    letter_id = f"dl_{task_id}"
    fields = {
        "task": task, "args": list(args), "kwargs": dict(kwargs), "queue": queue, "exc_type": exc_type,
        "message": message[:2000], "traceback": traceback[-20_000:], "attempts": attempts, "reason": reason,
        "last_failed_at_ms": now, **concerns(args),
    }
    try:
        db[DEAD_LETTERS].insert_one({"_id": letter_id, "task_id": task_id, "status": OPEN,
                                     "first_failed_at_ms": now, "created_at": utcnow(), **fields})
    except DuplicateKeyError:
        db[DEAD_LETTERS].update_one({"_id": letter_id}, {"$set": fields})
    return get(db, letter_id)


def get(db: Database, letter_id: str) -> dict[str, Any]:
    found = db[DEAD_LETTERS].find_one({"_id": letter_id})
    if found is None:
        raise NotFound(letter_id)
    return found


def view(letter: Mapping[str, Any], *, full: bool = False) -> dict[str, Any]:
    shown = {k: v for k, v in letter.items() if k not in {"_id", "created_at", "traceback"}}
    shown["id"] = letter["_id"]
    if full:
        shown["traceback"] = letter.get("traceback")
    return shown


def query(db: Database, *, task: str | None = None, status: str | None = None, order_id: str | None = None,
          limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    filters: dict[str, Any] = {}
    if task:
        filters["task"] = task
    if status:
        filters["status"] = status
    if order_id:
        filters["order_id"] = order_id
    found = db[DEAD_LETTERS].find(filters).sort("last_failed_at_ms", -1).skip(offset).limit(limit)
    return [view(letter) for letter in found], db[DEAD_LETTERS].count_documents(filters)


def mark_replayed(db: Database, letter_id: str, *, new_task_id: str, by: str | None) -> dict[str, Any]:
    """Close an open letter as replayed under `new_task_id` (the caller enqueues it)."""
    closed = db[DEAD_LETTERS].find_one_and_update(
        {"_id": letter_id, "status": OPEN},
        {"$set": {"status": REPLAYED, "replayed_as": new_task_id, "replayed_by": by, "replayed_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if closed is None:
        raise AlreadyClosed(letter_id, get(db, letter_id)["status"])
    return closed


def reopen(db: Database, letter_id: str) -> None:
    """Undo mark_replayed when the enqueue itself failed."""
    db[DEAD_LETTERS].update_one({"_id": letter_id, "status": REPLAYED}, {"$set": {"status": OPEN},
                                                                         "$unset": {"replayed_as": ""}})


def discard(db: Database, letter_id: str, *, by: str | None) -> dict[str, Any]:
    closed = db[DEAD_LETTERS].find_one_and_update(
        {"_id": letter_id, "status": OPEN},
        {"$set": {"status": DISCARDED, "discarded_by": by, "discarded_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if closed is None:
        raise AlreadyClosed(letter_id, get(db, letter_id)["status"])
    return closed


def counts_by_task(db: Database) -> dict[str, int]:
    """Dead letters ever recorded, per task (none is deleted, so this only grows)."""
    counts: dict[str, int] = {}
    for letter in db[DEAD_LETTERS].find({}, {"task": 1}):
        counts[letter["task"]] = counts.get(letter["task"], 0) + 1
    return counts


def new_task_id() -> str:
    return new_id("replay")


@dataclass(frozen=True)
class Selection:
    """The open dead letters a bulk action takes: every given field must match."""

    task: str | None = None
    exc_type: str | None = None
    queue: str | None = None
    failed_from_ms: int | None = None  # last failure at or after
    failed_until_ms: int | None = None  # last failure before

    def query(self) -> dict[str, Any]:
        found: dict[str, Any] = {"status": OPEN}
        for name in ("task", "exc_type", "queue"):
            if getattr(self, name):
                found[name] = getattr(self, name)
        when: dict[str, int] = {}
        if self.failed_from_ms is not None:
            when["$gte"] = self.failed_from_ms
        if self.failed_until_ms is not None:
            when["$lt"] = self.failed_until_ms
        if when:
            found["last_failed_at_ms"] = when
        return found

    def as_of(self, at_ms: int) -> Selection:
        """The same selection closed at `at_ms`: letters failing after the action was asked are not taken."""
        until = at_ms if self.failed_until_ms is None else min(self.failed_until_ms, at_ms)
        return Selection(self.task, self.exc_type, self.queue, self.failed_from_ms, until)

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def preview(db: Database, selection: Selection, *, sample: int = 10) -> tuple[int, list[dict[str, Any]]]:
    """A dry run: how many open letters the selection takes, and the newest few."""
    query = selection.query()
    found = db[DEAD_LETTERS].find(query).sort("last_failed_at_ms", -1).limit(sample)
    return db[DEAD_LETTERS].count_documents(query), [view(letter) for letter in found]


def discard_selected(db: Database, selection: Selection, *, by: str | None) -> int:
    """Close every open letter the selection takes, in one write; how many."""
    done = db[DEAD_LETTERS].update_many(selection.query(), {"$set": {"status": DISCARDED, "discarded_by": by,
                                                                     "discarded_at_ms": now_ms()}})
    return int(done.modified_count)


def open_ids(db: Database, selection: Selection, *, limit: int) -> list[str]:
    """Up to `limit` open letters of the selection, oldest failure first (the order a replay takes)."""
    found = db[DEAD_LETTERS].find(selection.query(), {"_id": 1}).sort("last_failed_at_ms", 1).limit(limit)
    return [letter["_id"] for letter in found]
