"""The bounded-storage prune (kirana.retention) of a large backlog, and the orders it shares the server with.

Fills `notification_attempts` with `rows` records past their retention (plus a few recent ones
that must stay), measures the orders pool's confirmed orders/s (one closed-loop batch of cash
orders), then runs the prune with the production settings (PRUNE_BATCH a command, PRUNE_PAUSE_S
between commands; no budget cut-off) in a thread while cash orders keep being submitted batch
after batch, and reports the prune's rows/s and the orders' rate before and during.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymongo.database import Database

from kirana import retention
from kirana.config import Settings

FILL_BATCH = 10_000
RECENT = 100
RULE = next(rule for rule in retention.RULES if rule.name == "notification_attempts")


@dataclass(frozen=True)
class PruneResult:
    rows: int
    fill_s: float
    prune_s: float
    deleted: int
    rows_left: int
    batch: int
    pause_s: float
    orders_before: float  # confirmed orders/s
    orders_during: float
    orders_during_n: int

    @property
    def failed(self) -> bool:
        return self.deleted != self.rows or self.rows_left != RECENT


def fill(database: Database, rows: int, now_ms: int, keep_days: int) -> float:
    """`rows` attempts older than their retention and RECENT newer ones; seconds taken."""
    started = time.perf_counter()
    old_at = now_ms - (keep_days + 1) * retention.DAY_MS
    collection = database[RULE.collection]
    for start in range(0, rows, FILL_BATCH):
        collection.insert_many([{"notification_id": f"bench-{i}", "at_ms": old_at - i, "ok": True}
                                for i in range(start, min(start + FILL_BATCH, rows))], ordered=False)
    collection.insert_many([{"notification_id": f"bench-recent-{i}", "at_ms": now_ms, "ok": True}
                            for i in range(RECENT)])
    return time.perf_counter() - started


def run_phase(database: Database, cfg: Settings, rows: int,
              orders_per_s: Callable[[], tuple[float, int]]) -> PruneResult:
    """`orders_per_s()` submits one batch of cash orders, waits for them, returns (confirmed/s, confirmed)."""
    now_ms = int(time.time() * 1000)
    keep = RULE.keep_days(cfg)
    fill_s = fill(database, rows, now_ms, keep)
    before, _ = orders_per_s()

    done: dict[str, float] = {}

    def prune() -> None:
        started = time.perf_counter()
        done["deleted"] = retention.prune_rule(database, RULE, now_ms=now_ms, keep_days=keep, batch=cfg.prune_batch,
                                               pause_s=cfg.prune_pause_s, max_batches=rows // cfg.prune_batch + 2)
        done["seconds"] = time.perf_counter() - started

    worker = threading.Thread(target=prune, name="bench-prune", daemon=True)
    worker.start()
    rates: list[tuple[float, int]] = []
    while worker.is_alive():
        rates.append(orders_per_s())
    worker.join()
    confirmed = sum(n for _, n in rates)
    # Weighted by orders: the batches' total confirmed over their total time.
    seconds = sum(n / rate for rate, n in rates if rate > 0)
    during = confirmed / seconds if seconds else 0.0
    left = database[RULE.collection].count_documents({})
    return PruneResult(rows=rows, fill_s=fill_s, prune_s=done.get("seconds", 0.0), deleted=int(done.get("deleted", 0)),
                       rows_left=left, batch=cfg.prune_batch, pause_s=cfg.prune_pause_s, orders_before=before,
                       orders_during=during, orders_during_n=confirmed)


def report(result: PruneResult, server: str) -> str:
    rate = result.deleted / result.prune_s if result.prune_s else 0.0
    paused = (result.rows // result.batch) * result.pause_s
    lines = [
        f"prune of {result.rows:,} old notification attempts on {server} (batches of {result.batch:,}, "
        f"{result.pause_s:g} s pause between them; filled in {result.fill_s:.1f} s)",
        f"  pruned {result.deleted:,} in {result.prune_s:.1f} s = {rate:,.0f} rows/s "
        f"({paused:.0f} s of it the pauses); rows left (the recent ones): {result.rows_left} of {RECENT}",
        f"  orders pool confirmed {result.orders_before:.1f} orders/s before the prune, "
        f"{result.orders_during:.1f}/s during it ({result.orders_during_n} orders)",
    ]
    if result.failed:
        lines.append("  FAILED: the prune did not delete exactly the old rows")
    return "\n".join(lines)
