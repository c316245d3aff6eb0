"""Worker heartbeats, so /readyz can tell that every pool is alive."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis.exceptions
from celery.signals import task_postrun, worker_ready, worker_shutdown

from kirana import liveness, redis_conn
from kirana.config import settings

log = logging.getLogger(__name__)
_stop = threading.Event()
_name: list[str] = []


def _beat_forever(worker_name: str) -> None:
    while not _stop.is_set():
        try:
            liveness.beat(redis_conn.client(), worker_name)
        except redis.exceptions.RedisError as exc:  # Redis down: try again next beat
            log.warning("heartbeat of %s failed: %s", worker_name, exc)
        _stop.wait(settings().worker_heartbeat_s)


@worker_ready.connect
def start_heartbeat(sender: Any = None, **_: Any) -> None:
    worker_name = sender.hostname
    _name.append(worker_name)
    threading.Thread(target=_beat_forever, args=(worker_name,), name="kirana-heartbeat", daemon=True).start()


@worker_shutdown.connect
def stop_heartbeat(**_: Any) -> None:
    _stop.set()
    for worker_name in _name:
        with contextlib.suppress(redis.exceptions.RedisError):
            liveness.depart(redis_conn.client(), worker_name)


# Progress is written at most this often per process: /readyz judges stalls over tens
# of seconds, and a Redis round trip after every task cost ~6% of a worker's CPU.
PROGRESS_EVERY_S = 1.0
_progress_written_at = [0.0]


@task_postrun.connect
def note_progress(sender: Any = None, **_: Any) -> None:
    """The pool did some work: /readyz tells an idle pool from a stuck one by this."""
    hostname = getattr(getattr(sender, "request", None), "hostname", None)
    if not hostname:
        return
    now = time.monotonic()
    if now - _progress_written_at[0] < PROGRESS_EVERY_S:
        return
    _progress_written_at[0] = now
    with contextlib.suppress(redis.exceptions.RedisError):
        liveness.progressed(redis_conn.client(), hostname)
