"""Which products the index has not caught up with, and bringing it up to date in bounded batches.

A catalog write marks its product in the same update that changes it:
``$min: {search_dirty_ms: now}`` keeps the time of the oldest change not yet
indexed, ``$inc: {search_rev: 1}`` counts changes. The indexer reads a batch
of marked products, writes them to the index, and clears each mark only if
`search_rev` is still what it read, so a change made meanwhile stays marked
(repeated changes of one product are indexed once). A deletion leaves a
tombstone in `search_tombstones` first, since the product document is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from pymongo.database import Database

from kirana import db as collections
from kirana.clock import now_ms
from kirana.search.index import DIRTY_FIELD, REV_FIELD, Index, clear_marks, root_of

TOMBSTONES = "search_tombstones"
# A tombstone whose product still exists after this long belongs to a delete that never happened.
STALE_TOMBSTONE_MS = 60_000


def mark(at_ms: int | None = None) -> dict[str, Any]:
    """Update operators that mark a product changed; merge them into the write that changes it."""
    return {"$min": {DIRTY_FIELD: at_ms or now_ms()}, "$inc": {REV_FIELD: 1}}


def bury(db: Database, product_id: str) -> None:
    """Before deleting a product: remember that the index must drop it."""
    db[TOMBSTONES].update_one({"_id": product_id}, {"$min": {"changed_at_ms": now_ms()}}, upsert=True)


def lag_ms(db: Database, *, now: int | None = None) -> int:
    """Age of the oldest change not yet in the index; 0 when there is none."""
    oldest = [
        doc[field]
        for collection, field in ((collections.PRODUCTS, DIRTY_FIELD), (TOMBSTONES, "changed_at_ms"))
        for doc in db[collection].find({field: {"$gt": 0}}, {field: 1}).sort(field, 1).limit(1)
    ]
    return max(0, (now or now_ms()) - min(oldest)) if oldest else 0


def pending(db: Database) -> bool:
    return any(db[c].find_one({f: {"$gt": 0}}, {"_id": 1}) is not None
               for c, f in ((collections.PRODUCTS, DIRTY_FIELD), (TOMBSTONES, "changed_at_ms")))


@dataclass(frozen=True)
class Batch:
    indexed: int
    removed: int
    cleared: int
    # A full batch: there may be more.
    full: bool


def index_batch(db: Database, r: redis.Redis, *, size: int) -> Batch:
    """Index up to `size` marked products and `size` tombstones, oldest change first."""
    products = db[collections.PRODUCTS]
    marked = list(products.find({DIRTY_FIELD: {"$gt": 0}}, {"holds": 0, "restocked": 0})
                  .sort(DIRTY_FIELD, 1).limit(size))
    tombstones = list(db[TOMBSTONES].find({"changed_at_ms": {"$gt": 0}}).sort("changed_at_ms", 1).limit(size))
    buried = [t["_id"] for t in tombstones]
    still_there = {p["_id"]: p for p in products.find({"_id": {"$in": buried}}, {"holds": 0, "restocked": 0})} \
        if buried else {}
    gone = [pid for pid in buried if pid not in still_there]
    index = Index(r, root_of(db))
    index.apply(marked, gone, mode="live")
    cleared = clear_marks(db, [(p["_id"], p.get(REV_FIELD)) for p in marked])
    now = now_ms()
    for tombstone in tombstones:
        pid = tombstone["_id"]
        # Still there: the delete has not landed yet (keep it), or never will (drop it; the product is indexed).
        if pid not in still_there or now - int(tombstone["changed_at_ms"]) > STALE_TOMBSTONE_MS:
            cleared += db[TOMBSTONES].delete_one({"_id": pid, "changed_at_ms": tombstone["changed_at_ms"]}) \
                .deleted_count
    return Batch(indexed=len(marked), removed=len(gone), cleared=cleared,
                 full=len(marked) == size or len(tombstones) == size)
