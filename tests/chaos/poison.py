"""A poison message for the chaos suite: a task that kills the worker process running it.

Loaded only by a worker started with KIRANA_EXTRA_TASK_MODULES=tests.chaos.poison.
Its name starts with "audit.", so the routes put it on the audit queue. With
task_reject_on_worker_lost a dead prefork child gives the message straight
back, so it comes round again at once until the redelivery cap (tasks/base.py)
dead-letters it.
"""

from __future__ import annotations

import os
import signal

from tasks.app import app
from tasks.base import KiranaTask


@app.task(name="audit.poison", base=KiranaTask, soft_time_limit=10, time_limit=20)
def poison(note: str = "") -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return note  # never reached
