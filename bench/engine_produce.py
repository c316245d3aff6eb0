"""One producer process of `python -m bench.engine`: enqueue N no-op tasks, print one JSON line.

    python -m bench.engine_produce stock N          stock Celery: task.delay()
    python -m bench.engine_produce floor N          Celery at its leanest (bench/engine_floor.py): task.delay()
    python -m bench.engine_produce kirana N         Kirana: tasks.reliability.enqueue (what the API calls)
    python -m bench.engine_produce kirana-batch N   Kirana: tasks.reliability.enqueue_many (one batch)

A process of its own per path, so the stock path runs without Kirana's
publish signals and each rate is that of one fresh producer process.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable


def _stock(floor: bool = False) -> Callable[[int], None]:
    if floor:
        from bench.engine_floor import noop
    else:
        from bench.engine_stock import noop

    def send(n: int) -> None:
        for i in range(n):
            noop.delay(i)

    noop.delay(-1)  # connect before the clock starts, as a long-lived process would be
    return send


def _kirana(batch: bool) -> Callable[[int], None]:
    from bench.engine_tasks import noop
    from tasks import reliability

    def send(n: int) -> None:
        if batch:
            reliability.enqueue_many(noop, [(i,) for i in range(n)])
        else:
            for i in range(n):
                reliability.enqueue(noop, (i,))

    reliability.enqueue(noop, (-1,))
    return send


PATHS: dict[str, Callable[[], Callable[[int], None]]] = {
    "stock": _stock,
    "floor": lambda: _stock(floor=True),
    "kirana": lambda: _kirana(batch=False),
    "kirana-batch": lambda: _kirana(batch=True),
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in PATHS:
        print(__doc__, file=sys.stderr)
        return 2
    n = int(argv[1])
    send = PATHS[argv[0]]()
    cpu0, t0 = time.process_time(), time.perf_counter()
    send(n)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    # The warm-up message is queued too.
    print(json.dumps({"n": n, "queued": n + 1, "wall_s": wall, "cpu_s": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
