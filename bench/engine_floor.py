"""Celery at its leanest, for `python -m bench.engine` (e): what no configuration of Celery beats here.

Every per-task cost Celery lets one switch off is off: acks early (no unacked
bookkeeping), prefetch 64 per process, no task events, no result backend, no
rate limits, no gossip/mingle/heartbeat, and the solo pool (the task runs in the
consumer's own loop: no pipe or pickling), one worker process per core. It is
not a configuration Kirana could run (a worker lost mid-task loses it; no time
limits; Flower sees nothing): it bounds what tuning Kirana's pools can reach.
Imports nothing of Kirana.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("floor", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=False,
    worker_prefetch_multiplier=64,
    worker_send_task_events=False,
    task_send_sent_event=False,
    task_ignore_result=True,
    worker_disable_rate_limits=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
QUEUE = "celery"


@app.task(name="floor.noop")
def noop(seq: int) -> None:
    return None
