"""The dispatcher: an order's recorded follow-ups become tasks, then are forgotten.

A move records its follow-ups ("intents", kirana.transitions) in the order with
the status. After the write, the code that made it calls `send` with the order
it got back. Each intent goes out under a deterministic task id,
`<order id>:<intent name>`, all in one pipelined publish (or all to the outbox
when the broker is down), and then one update forgets them. A run that dies
between its write and `send` leaves them recorded: `sweep_once`, run by the
outbox relay every second or so, sends whatever has waited longer than
DISPATCH_SWEEP_S. Sending twice is harmless: every follow-up task is idempotent.

The search intent is coalesced: it asks for an indexer run only when none is
waiting already (tasks/search.py request_indexing), whatever the number of orders.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from kirana import db, orders, transitions
from kirana.clock import now_ms
from kirana.config import settings
from tasks import faults, reliability
from tasks import search as search_tasks
from tasks.base import publish_order_updates

log = logging.getLogger(__name__)

SWEEP_BATCH = 200


def task_id(order_id: str, name: str) -> str:
    return f"{order_id}:{name}"


def send(order: Mapping[str, Any] | None) -> int:
    """Hand on the order's recorded follow-ups (`order` as a write returned it); how many went."""
    if not order or "intents_at_ms" not in order:
        return 0
    faults.kill_here(faults.KILL_BEFORE_DISPATCH)
    pending: Mapping[str, Mapping[str, Any]] = order.get("intents") or {}
    tasks = {intent["task"] for intent in pending.values()}
    messages = [(intent["task"], intent["args"], task_id(order["_id"], name))
                for name, intent in pending.items() if intent["task"] not in {transitions.SEARCH, *transitions.INLINE}]
    reliability.enqueue_intents(messages)
    if transitions.SEARCH in tasks:
        search_tasks.request_indexing_quietly()
    # In the order the statuses were reached (a run that made two moves sends both).
    updates = sorted((i["args"] for i in pending.values() if i["task"] == transitions.LIVE), key=lambda a: a[2])
    if updates:
        publish_order_updates(order["_id"], [{"order_id": a[0], "status": a[1], "at_ms": a[2]} for a in updates])
    orders.intents_sent(db.database(), order, list(pending))
    return len(pending)


def send_for(database: Database, order_id: str) -> int:
    """`send` for a caller that has the order's id, not the document its write returned (one read)."""
    return send(orders.pending_intents(database, order_id))


def send_quietly(order: Mapping[str, Any] | None) -> int:
    """`send` for a caller whose own answer must not depend on it: the sweep sends what this could not."""
    try:
        return send(order)
    except Exception as exc:  # recorded with the order; the sweep hands it on within DISPATCH_SWEEP_S
        log.warning("could not dispatch the follow-ups of %s (%s); the sweep will",
                    (order or {}).get("_id"), type(exc).__name__)
        return 0


def sweep_once(limit: int = SWEEP_BATCH) -> int:
    """Send the follow-ups that runs which died after their write left behind; how many orders."""
    older_than = now_ms() - int(settings().dispatch_sweep_s * 1000)
    left = orders.with_unsent_intents(db.database(), older_than, limit)
    for order in left:
        send(order)
    return len(left)
