"""search queue: keep the product index up to date, and rebuild it.

- `search.index_dirty`: index marked products in bounded batches for a few
  seconds, then enqueue itself again while anything is still marked.
- `search.sweep` (beat): the safety net: indexes whatever is marked even if
  no write managed to enqueue the indexer, and builds the first index.
- `search.reindex` (on demand and nightly): a full build into a new keyspace,
  flipped in atomically (kirana.search.index).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.exceptions

from kirana import db, search
from kirana.config import settings
from kirana.search import dirty, index
from tasks import reliability
from tasks.app import app
from tasks.base import KiranaTask
from tasks.reliability import run_once

log = logging.getLogger(__name__)

# One indexer run works this long, then hands over to a fresh message (bounded work per task).
RUN_BUDGET_S = 5.0
# Set while an indexer run is queued: writes meanwhile need not enqueue another.
PENDING_SUFFIX = "indexer-pending"
# Longer than a backlogged search queue keeps a run waiting: with 30 s, a queue behind by more than
# that got a second run, then a third (452 waiting at 20 orders/s, issue 19). A lost message or
# flag delays indexing by at most this, and the beat sweep asks again.
PENDING_TTL_S = 120
# A full build of a 50,000-product catalog takes about a minute; the search queue's visibility
# timeout (600 s) must outlast the hard limit plus the longest retry countdown.
REINDEX_SOFT_LIMIT_S = 360
REINDEX_HARD_LIMIT_S = 420
REINDEX_LOCK_TTL_S = REINDEX_HARD_LIMIT_S + 60


def request_indexing() -> str:
    """After a catalog write: make sure one indexer run is on its way (coalesced).

    The flag only saves messages: a lost flag or message is caught by the beat
    sweep, because the mark itself is stored with the product.
    """
    if not _flag_pending():
        return "coalesced"
    return reliability.enqueue(index_dirty, [])


def carry_on(countdown: float) -> str:
    """A run that left work behind sends the next one, unless a write already did (the same flag).

    Sending it unflagged was a leak: every run under steady writes added one message to the
    queue beside the one the next write sent, and `make soak` watched the search queue grow
    to hundreds.
    """
    if not _flag_pending():
        return "coalesced"
    index_dirty.apply_async(countdown=countdown)
    return "enqueued"


def _flag_pending() -> bool:
    """Set the indexer-pending flag; False when it was set already (a run is on its way)."""
    try:
        return bool(index.client().set(_pending_key(), "1", nx=True, ex=PENDING_TTL_S))
    except redis.exceptions.RedisError:
        return True  # no flag without Redis; enqueue (or outbox) anyway


def _pending_key() -> str:
    return f"{index.root_of(db.database())}:{PENDING_SUFFIX}"


def request_indexing_quietly() -> str:
    """request_indexing for work whose own outcome must not depend on it (an order's processing)."""
    try:
        return request_indexing()
    except Exception as exc:  # the mark is stored with the product; the sweep indexes it
        log.warning("could not enqueue the search indexer (%s); the sweep will", type(exc).__name__)
        return "deferred"


@app.task(name="search.index_dirty", base=KiranaTask, soft_time_limit=60, time_limit=90)
def index_dirty() -> dict[str, Any]:
    # Cleared before reading: a write from now on enqueues a run of its own.
    index.client().delete(_pending_key())
    database = db.database()
    if search.current_version(database) is None:
        reindex.delay()  # nothing to update yet; the first build indexes everything
        return {"indexed": 0, "removed": 0, "first_build": True}
    indexed = removed = 0
    started = time.monotonic()
    while True:
        batch = search.index_batch(database, size=settings().search_batch_size)
        indexed, removed = indexed + batch.indexed, removed + batch.removed
        if not batch.full or time.monotonic() - started > RUN_BUDGET_S:
            break
    if dirty.pending(database):
        # More than the budget, or a tombstone whose delete has not landed yet: carry on in a moment.
        carry_on(countdown=0 if batch.full else 1)
    return {"indexed": indexed, "removed": removed}


@app.task(name="search.sweep", base=KiranaTask, soft_time_limit=20, time_limit=30)
def sweep() -> str:
    if search.current_version(db.database()) is None:
        reindex.delay()
        return "first build"
    if dirty.pending(db.database()):
        return request_indexing()
    return "clean"


@app.task(name="search.reindex", base=KiranaTask, soft_time_limit=REINDEX_SOFT_LIMIT_S,
          time_limit=REINDEX_HARD_LIMIT_S)
@run_once("search.reindex", ttl_s=REINDEX_LOCK_TTL_S)
def reindex() -> dict[str, Any]:
    built = search.rebuild(db.database())
    log.info("search index v%s built: %s products in %s ms", built["version"], built["products"],
             built["duration_ms"])
    return built
