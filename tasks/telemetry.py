"""Stamp every published task message with its send time.

The API's /metrics reads the oldest waiting message of each queue and reports
its age from this header (kirana_queue_oldest_age_seconds): how long the work
at the head of a queue has waited is the backlog signal users feel, which a
queue length alone does not give. Connected in every process that publishes
(API, workers retrying or chaining, beat), as tasks/app.py imports this module.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import before_task_publish

SENT_AT_HEADER = "kirana_sent_at"


@before_task_publish.connect(weak=False)
def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())
