"""gunicorn hooks for /metrics under several worker processes (gunicorn -c python:stack.gunicorn_conf).

Each worker process counts requests in files under PROMETHEUS_MULTIPROC_DIR and
/metrics sums them, so a scrape sees the whole server, not whichever process
answered. Unless set, the directory is one per gunicorn master (several APIs may
share a machine: tests, the chaos rig), emptied at start, since files left by a
previous run would be summed as if they were this run's, and removed at exit.
It is set here, in the master, and not in the image's environment: Flower and
other processes of the image use prometheus-client too, and would then need it.
This module lives outside the `api` package on purpose: importing `api` would
import prometheus-client (which picks its mode at import) before the variable is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

_OWN = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _OWN:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(tempfile.gettempdir(), f"kirana-metrics-{os.getpid()}")


def on_starting(server: Any) -> None:
    # In the master, before any worker: a refused worker would only be started again and again.
    from kirana import preflight

    preflight.check(process="api")
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    # The API writes log lines in batches (kirana.logs.BufferedLineHandler): write
    # what is held before the worker goes, which may not run atexit handlers.
    import logging

    for handler in logging.getLogger().handlers:
        handler.flush()


def on_exit(server: Any) -> None:
    if _OWN:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
