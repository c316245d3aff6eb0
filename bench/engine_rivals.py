"""Dramatiq and Huey with a no-op task, for `python -m bench.engine`; runs in the bench-only `.venv-bench`.

Imports neither Kirana nor Celery (they are not in that virtualenv):

    python -m bench.engine_rivals produce dramatiq|huey N    enqueue N no-op tasks; print one JSON line
    python -m dramatiq bench.engine_rivals:dramatiq_app ...   the Dramatiq worker (BENCH_RIVAL=dramatiq)
    huey_consumer bench.engine_rivals.huey_app ...            the Huey consumer (BENCH_RIVAL=huey)

Both read BENCH_REDIS_URL. Each framework keeps its defaults, as a user would have them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RIVAL = os.environ.get("BENCH_RIVAL", "")
HUEY_NAME = "bench"
# Redis keys that hold the work not yet done: bench.engine polls them.
DRAMATIQ_PENDING_HASH = "dramatiq:default.msgs"  # a message leaves this hash when it is acked
HUEY_QUEUE = f"huey.redis.{HUEY_NAME}"

dramatiq_noop: Any = None
huey_noop: Any = None
huey_app: Any = None

if RIVAL == "dramatiq":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq_app = RedisBroker(url=REDIS_URL)
    dramatiq.set_broker(dramatiq_app)

    @dramatiq.actor
    def noop(seq: int) -> None:
        return None

    dramatiq_noop = noop

elif RIVAL == "huey":
    from huey import RedisHuey

    huey_app = RedisHuey(HUEY_NAME, url=REDIS_URL)

    @huey_app.task()
    def noop(seq: int) -> None:
        return None

    huey_noop = noop


def produce(n: int) -> dict[str, float]:
    send = dramatiq_noop.send if RIVAL == "dramatiq" else huey_noop
    send(-1)  # connect before the clock starts; queued too
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        send(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"n": n, "queued": n + 1, "wall_s": wall, "cpu_s": cpu}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "produce" or sys.argv[2] != RIVAL:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    # Through the module's import name: Huey names a task by its module, and the consumer imports this one.
    named = importlib.import_module("bench.engine_rivals")
    print(json.dumps(named.produce(int(sys.argv[3]))), flush=True)
