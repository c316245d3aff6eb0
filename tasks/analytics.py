"""analytics queue: keep the store analytics read model (kirana.analytics) up to date.

`analytics.refresh` is one bounded scan of the orders changed since the stored
cursor. An order's change sends one (debounced: tasks.base.publish_order_updates)
timed to run once the change is older than the scan's lag, and beat sends one a
minute as the net. It runs once at a time; a run that finds more work left sends
itself again (up to a cap), and a run that was skipped leaves its work to the
holder, which looks again after it lets go.

There was a second path, ids of changed orders kept in a Redis set and summed one
by one before the scan; the scan then summed the same orders again. `make soak`
counted it at ~8.5 MongoDB commands per order, most of them that double work.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from kirana import analytics, db
from kirana.config import settings
from tasks.app import app
from tasks.base import KiranaTask, refresh_analytics_soon
from tasks.reliability import run_once

SOFT_LIMIT_S = 100
HARD_LIMIT_S = 120


@run_once("analytics.refresh", ttl_s=2 * HARD_LIMIT_S)
def _refresh_once() -> dict[str, Any]:
    cfg = settings()
    updater = analytics.Updater(db.database(), ZoneInfo(cfg.analytics_timezone))
    done = updater.scan(cfg.analytics_batch)
    return {"scanned": done.orders, "more": done.more, "sum_due_in_ms": done.sum_due_in_ms}


@app.task(name="analytics.refresh", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
def refresh(rounds_left: int = 20) -> dict[str, Any]:
    outcome = _refresh_once()
    if "skipped" in outcome:
        return outcome
    if outcome["more"] and rounds_left > 1:
        refresh.delay(rounds_left - 1)
    elif outcome["sum_due_in_ms"] is not None:
        # A day waits for its sum: one run then, unless a change has one on its way already.
        refresh_analytics_soon(int(outcome["sum_due_in_ms"]))
    return outcome
