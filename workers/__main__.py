"""Start one pool (or print its command): ``python -m workers start orders``.

    python -m workers list              the pool table
    python -m workers command orders    the celery command for one pool
    python -m workers start orders      exec that command in the foreground
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


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
