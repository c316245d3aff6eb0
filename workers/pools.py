"""The table of worker pools and the command that starts each one.

One pool per queue, so a slow kind of work (a backup) never starves another
(an order), and each pool is scaled on its own queue's length. Measured on
2 cores: a worker process has one consumer, so more processes drain faster
than more concurrency inside one; prefetch above 1 made long queues worse.

Time limits need the prefork pool (the solo and threads pools cannot kill a
stuck task), so pools whose tasks are CPU-bound or must be cut off use
prefork; pools that wait on the network use threads and rely on the
network timeouts of their clients.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from tasks.queues import Queue


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[Queue, ...]
    pool: str  # prefork | threads | solo
    concurrency: int
    prefetch_multiplier: int = 1
    # Recycle child processes to bound leaks in long-lived workers.
    max_tasks_per_child: int = 1000
    max_memory_per_child_kb: int = 300_000
    # (max, min) processes when autoscaling inside one worker; None = fixed.
    autoscale: tuple[int, int] | None = None
    loglevel: str = "INFO"

    def env_concurrency(self) -> int:
        """`KIRANA_POOL_<NAME>_CONCURRENCY` overrides the table (e.g. in tests)."""
        raw = os.environ.get(f"KIRANA_POOL_{self.name.upper()}_CONCURRENCY")
        return int(raw) if raw else self.concurrency


POOLS: tuple[Pool, ...] = (
    # 4, not 2: on the embedded server, which answers one command at a time in arrival order, the
    # order path's share of it is its share of the connections waiting; `make soak` at 30/s measured
    # submit->confirmed p99 17.9 s at 2, 7.7 s at 4 and 8.8 s at 6 (then the 2 cores are the limit).
    Pool("orders", (Queue.ORDERS,), "prefork", 4),
    Pool("payments", (Queue.PAYMENTS,), "prefork", 2),
    Pool("webhooks", (Queue.WEBHOOKS,), "threads", 4),
    Pool("search", (Queue.SEARCH,), "prefork", 1),
    Pool("leaderboards", (Queue.LEADERBOARDS,), "prefork", 1),
    Pool("backups", (Queue.BACKUPS,), "prefork", 1, max_tasks_per_child=1),
    Pool("notifications", (Queue.NOTIFICATIONS,), "threads", 8),
    Pool("audit", (Queue.AUDIT,), "prefork", 1),
    Pool("sync", (Queue.SYNC,), "prefork", 1),
    Pool("analytics", (Queue.ANALYTICS,), "prefork", 1),
)

BY_NAME: dict[str, Pool] = {p.name: p for p in POOLS}


def node_name(pool: Pool) -> str:
    return f"{pool.name}@{pool.name}.%h"


def worker_command(pool: Pool, *, python: str | None = None) -> list[str]:
    """argv that starts one worker of `pool` in the foreground."""
    argv = [
        python or sys.executable, "-m", "celery", "-A", "tasks.app", "worker",
        "-Q", ",".join(q.value for q in pool.queues),
        # <pool>@<pool>.<host>: the part before @ picks the queue's delivery settings
        # (tasks/app.py); celery-exporter labels a worker by the part after @ only,
        # so that part names the pool too, or all pools on one host would be one worker.
        "-n", node_name(pool),
        "-P", pool.pool,
        "--prefetch-multiplier", str(pool.prefetch_multiplier),
        "-l", os.environ.get("KIRANA_WORKER_LOGLEVEL", pool.loglevel),
        # Workers of other pools are not this worker's business: no gossip,
        # mingle or heartbeat broadcast between them.
        "--without-gossip", "--without-mingle",
    ]
    if pool.autoscale:
        argv += ["--autoscale", f"{pool.autoscale[0]},{pool.autoscale[1]}"]
    else:
        argv += ["-c", str(pool.env_concurrency())]
    if pool.pool == "prefork":
        argv += [
            "--max-tasks-per-child", str(pool.max_tasks_per_child),
            "--max-memory-per-child", str(pool.max_memory_per_child_kb),
        ]
    return argv


def beat_command(schedule_file: str, *, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "-s", schedule_file, "-l", "INFO"]
