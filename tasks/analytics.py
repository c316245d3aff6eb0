"""analytics queue: keep the store analytics read model (kirana.analytics) up to date.

`analytics.refresh` first takes the orders whose status changed (marked dirty by
tasks.base.publish_order_update), then one bounded scan from the stored cursor.
It runs once at a time; a run that finds more work left sends itself again (up
to a cap), and a run that was skipped leaves its work to the holder, which looks
again after it lets go.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from kirana import analytics, db, redis_conn
from kirana.config import settings
from tasks.app import app
from tasks.base import ANALYTICS_DIRTY, KiranaTask
from tasks.reliability import run_once

SOFT_LIMIT_S = 100
HARD_LIMIT_S = 120


@run_once("analytics.refresh", ttl_s=2 * HARD_LIMIT_S)
def _refresh_once() -> dict[str, Any]:
    cfg = settings()
    updater = analytics.Updater(db.database(), ZoneInfo(cfg.analytics_timezone))
    r = redis_conn.client()
    # Popped before they are summed: an id lost to a crash here is caught by the scan below.
    dirty = [i.decode() if isinstance(i, bytes) else i for i in (r.spop(ANALYTICS_DIRTY, cfg.analytics_batch) or [])]
    days = updater.resum(updater.update_order_ids(dirty))
    scanned, more = updater.scan(cfg.analytics_batch)
    return {"dirty": len(dirty), "days": days, "scanned": scanned, "more": more}


@app.task(name="analytics.refresh", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
def refresh(rounds_left: int = 20) -> dict[str, Any]:
    outcome = _refresh_once()
    if "skipped" in outcome:
        return outcome
    more = outcome["more"] or bool(redis_conn.client().scard(ANALYTICS_DIRTY))
    if more and rounds_left > 1:
        refresh.delay(rounds_left - 1)
    return outcome
