"""Start one pool (or print its command): ``python -m workers start orders``.

    python -m workers list              the pool table
    python -m workers command orders    the celery command for one pool
    python -m workers start orders      exec that command in the foreground
    python -m workers health            each pool: live workers, queue length, last progress
"""

from __future__ import annotations

import os
import shlex
import sys

from workers.pools import BY_NAME, POOLS, worker_command


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "list":
        print(f"{'pool':<14}{'queues':<16}{'type':<9}{'conc':>5}{'prefetch':>9}")
        for p in POOLS:
            queues = ",".join(q.value for q in p.queues)
            print(f"{p.name:<14}{queues:<16}{p.pool:<9}{p.env_concurrency():>5}{p.prefetch_multiplier:>9}")
        return 0
    if argv[0] == "health":
        return health()
    verb, *rest = argv
    if verb not in {"command", "start"} or len(rest) != 1 or rest[0] not in BY_NAME:
        print(__doc__, file=sys.stderr)
        print(f"pools: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    argv_ = worker_command(BY_NAME[rest[0]])
    if verb == "command":
        print(shlex.join(argv_))
        return 0
    os.execv(argv_[0], argv_)
    return 0  # not reached



def health() -> int:
    """Print each pool's health; exit 1 when a pool is down or stalled."""
    from api.health import STALL_AFTER_S
    from kirana import liveness, redis_conn
    from kirana.config import settings

    report = liveness.pool_health(redis_conn.client(), [p.name for p in POOLS],
                                  alive_window_s=settings().worker_alive_window_s, stall_after_s=STALL_AFTER_S)
    print(f"{'pool':<14}{'workers':>8}{'queued':>8}{'last done':>12}  verdict")
    for pool, row in report.items():
        ago = "never" if row["last_progress_s_ago"] is None else f"{row['last_progress_s_ago']}s ago"
        print(f"{pool:<14}{row['workers']:>8}{row['queued']:>8}{ago:>12}  {row['verdict']}")
    return 0 if all(row["verdict"] == "ok" for row in report.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
