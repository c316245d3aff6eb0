"""Data changes over large collections: bounded batches that resume from a cursor kept in MongoDB.

A backfill walks a collection in `_id` order, `batch` documents at a time.
After each batch it stores the last `_id` it reached in
`migrations_progress`, so a run that was interrupted (killed, lease lost,
Ctrl-C) starts again after that `_id` instead of from the beginning. Every
write carries a guard in its filter (the field is still missing), so the
batch that was written but whose cursor was not yet saved is not applied
twice when it is read again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from tqdm import tqdm

from kirana.clock import now_ms
from kirana.db import bulk_update

PROGRESS = "migrations_progress"
DEFAULT_BATCH = 500


@dataclass
class Context:
    """What a data change gets from the runner."""

    batch: int = DEFAULT_BATCH
    # Called after every batch: renews the runner's lease (and lets a test stop the run).
    after_batch: Callable[[], None] = lambda: None
    show_progress: bool = True
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))


def progress_of(db: Database, key: str) -> dict[str, Any] | None:
    return db[PROGRESS].find_one({"_id": key})


def backfill(db: Database, ctx: Context, *, key: str, collection: str, missing: str,
             value: Callable[[Mapping[str, Any]], Any], projection: Mapping[str, int] | None = None) -> int:
    """Set `missing` to `value(doc)` on every document of `collection` that lacks it; returns how many this run set.

    `key` names the cursor in `migrations_progress` (one per data change).
    """
    state = progress_of(db, key) or {}
    if state.get("finished_at_ms"):
        return 0
    cursor = state.get("cursor")
    guard = {missing: {"$exists": False}}
    remaining = db[collection].count_documents({**guard, "_id": {"$gt": cursor}} if cursor is not None else guard)
    done_before = int(state.get("done", 0))
    if cursor is not None:
        ctx.log(f"{key}: resuming after _id {cursor!r} ({done_before} done before)")
    changed = 0
    with tqdm(total=done_before + remaining, initial=done_before, desc=key, unit=" docs", file=sys.stderr,
              disable=not ctx.show_progress) as bar:
        while True:
            query: dict[str, Any] = dict(guard)
            if cursor is not None:
                query["_id"] = {"$gt": cursor}
            docs = list(db[collection].find(query, projection or {"_id": 1}).sort("_id", 1).limit(ctx.batch))
            if not docs:
                break
            ops = [UpdateOne({"_id": doc["_id"], **guard}, {"$set": {missing: value(doc)}}) for doc in docs]
            modified = bulk_update(db[collection], ops).modified
            cursor = docs[-1]["_id"]
            changed += modified
            db[PROGRESS].update_one({"_id": key}, {"$set": {"cursor": cursor, "updated_at_ms": now_ms()},
                                                  "$inc": {"done": modified, "batches": 1}}, upsert=True)
            bar.update(len(docs))
            ctx.after_batch()
    db[PROGRESS].update_one({"_id": key}, {"$set": {"finished_at_ms": now_ms(), "updated_at_ms": now_ms()}},
                            upsert=True)
    return changed


def forget(db: Database, key: str) -> None:
    """Drop a data change's cursor, so that applying its step again walks the collection again."""
    db[PROGRESS].delete_one({"_id": key})
