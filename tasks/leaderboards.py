"""leaderboards queue: points, achievements and leaderboards from order changes; the scheduled refresh."""

from __future__ import annotations

import logging

from kirana import db, loyalty, orders, redis_conn
from kirana.clock import now_ms
from kirana.config import settings
from kirana.loyalty import achievements, boards
from tasks import notifications as notification_tasks
from tasks import reliability
from tasks.app import app
from tasks.base import KiranaTask
from tasks.reliability import run_once

log = logging.getLogger(__name__)

SWEEP_WINDOW_MS = 3_600_000
# Younger changes are left to the sync their own change enqueued.
SWEEP_GRACE_MS = 60_000
SWEEP_SCAN = 5000


@app.task(name="leaderboards.sync_order", base=KiranaTask, soft_time_limit=20, time_limit=30)
def sync_order(order_id: str) -> str:
    database = db.database()
    try:
        done = loyalty.sync_order(database, boards.Boards(redis_conn.client()), order_id)
    except orders.OrderNotFound:
        return "missing"
    for doc_id, achievement in done.achievements:
        # Keyed by the achievement, so a second enqueue plans nothing twice.
        customer = doc_id.split(":", 1)[0]
        notification_tasks.trigger(customer, "achievement_earned", dict(loyalty.achievement_params(achievement)),
                                   key=f"achievement:{doc_id}")
        achievements.mark_notified(database, doc_id)
    returned = f"{order_id}:redeem:reversal"
    if returned in done.entries:
        order = orders.get(database, order_id)
        notification_tasks.trigger(order["customer_id"], "points_returned",
                                   {"order_id": order_id, "points": int(order.get("redeem_points") or 0)},
                                   key=f"{returned}:points_returned")
    return f"{done.status}: {len(done.entries)} entries"


def order_changed(order_id: str) -> None:
    """Enqueue the order's loyalty sync after its status change is stored (outbox when the broker is down)."""
    reliability.enqueue(sync_order, [order_id])


@app.task(name="leaderboards.sweep", base=KiranaTask, soft_time_limit=50, time_limit=60)
@run_once("leaderboards.sweep", ttl_s=90)
def sweep() -> int:
    """Safety net: orders changed in the last hour whose loyalty sync was lost."""
    now = now_ms()
    found = loyalty.unsynced(db.database(), since_ms=now - SWEEP_WINDOW_MS, until_ms=now - SWEEP_GRACE_MS,
                             limit=SWEEP_SCAN)
    reliability.enqueue_many(sync_order, [(order_id,) for order_id in found])
    return len(found)


@app.task(name="leaderboards.refresh", base=KiranaTask, soft_time_limit=400, time_limit=450)
@run_once("leaderboards.refresh", ttl_s=480)
def refresh() -> dict[str, float]:
    done = boards.refresh(db.database(), boards.Boards(redis_conn.client()), now_ms=now_ms(),
                          margin_ms=settings().leaderboard_refresh_margin_s * 1000)
    log.info("leaderboards refreshed: %d boards from %d entries in %.2fs", done.boards, done.entries, done.seconds)
    return {"boards": done.boards, "entries": done.entries, "seconds": round(done.seconds, 3)}
