"""Stock Celery with a no-op task, for `python -m bench.engine`: every setting at its default but the broker.

Imports nothing of Kirana, so none of Kirana's signal receivers (tasks/tracing.py,
tasks/telemetry.py) are connected in its worker or producer.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("stock", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
QUEUE = "celery"  # the default queue


@app.task(name="stock.noop")
def noop(seq: int) -> None:
    return None
