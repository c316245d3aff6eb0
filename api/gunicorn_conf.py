"""gunicorn hooks for /metrics under several worker processes (gunicorn -c python:api.gunicorn_conf).

With PROMETHEUS_MULTIPROC_DIR set, each worker process writes its counters to
files there and /metrics sums them. The directory must start empty: files left
by a previous run would be summed as if they were this run's.
"""

from __future__ import annotations

import os
import shutil
from typing import Any


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
