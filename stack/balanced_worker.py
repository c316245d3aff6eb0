"""gunicorn's gthread worker, but a worker holding more connections than another leaves new ones to it.

Why: a gthread worker keeps every keep-alive connection it accepts for the
connection's life, and all workers accept from one listening socket. A burst
of new connections (a load balancer's pool, a client's pool, the bench) is
taken mostly by whichever worker is awake: 1 and 15, 0 and 16 were seen with
2 workers and 16 connections. Each worker is one process bound by its GIL to
one core, so the crowded one saturates while the other idles: webhook ingest
fell from ~1,150 to 700-950 events/s on such runs.

Each worker writes how many connections it holds, and when it last looked,
into a table shared by all workers (created in the master, before it forks
them), and stops listening while it holds more than the least loaded other
worker; it listens again on its next turn of the event loop after that
changes (at once under load, at most a second later when idle). A worker that
has not looked for STALE_S (killed, stopped, wedged) is left out, so the
others never wait for it. With one worker it is plain gthread.

    gunicorn --worker-class stack.balanced_worker.BalancedThreadWorker ...
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # more workers than this on one master share no table: they run as plain gthread
# A worker's loop turns at least once a second (gthread waits for events 1 s at most):
# one that has not turned for this long is not serving, and is not waited for.
STALE_S = 3.0
# Per slot: the worker's pid (0 = free), the connections it holds and when it last looked
# (time.monotonic, one clock for every process on the machine). Written by its own worker only.
_PIDS = multiprocessing.RawArray(ctypes.c_int, SLOTS)
_CONNS = multiprocessing.RawArray(ctypes.c_int, SLOTS)
_SEEN = multiprocessing.RawArray(ctypes.c_double, SLOTS)
_CLAIM = multiprocessing.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_slot(pid: int) -> int | None:
    """A free slot (or one whose worker is gone) for `pid`; None when all are taken."""
    with _CLAIM:
        for slot in range(SLOTS):
            if _PIDS[slot] == 0 or (_PIDS[slot] != pid and not _alive(_PIDS[slot])):
                _PIDS[slot] = pid
                _CONNS[slot] = 0
                _SEEN[slot] = 0.0  # not waited for until its loop turns (it may take seconds to load the app)
                return slot
    return None


def release_slot(slot: int) -> None:
    _CONNS[slot] = 0
    _PIDS[slot] = 0


def least_other(slot: int, now: float) -> int | None:
    """Connections held by the least loaded other worker seen within STALE_S; None when there is none."""
    least: int | None = None
    for other in range(SLOTS):
        if other == slot or _PIDS[other] == 0 or now - _SEEN[other] > STALE_S:
            continue
        conns = _CONNS[other]
        if least is None or conns < least:
            least = conns
    return least


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with accepting shared out by connections held (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slot: int | None = None
        super().__init__(*args, **kwargs)  # sets worker_connections: the property's setter keeps it as the cap

    @property
    def worker_connections(self) -> int:
        # ThreadWorker.run reads this on every turn of its loop to decide whether to
        # listen (nr_conns < worker_connections): the one place to hook the decision.
        cap = self._cap
        slot = self._slot
        if slot is None:
            return cap
        now = time.monotonic()
        _CONNS[slot] = self.nr_conns
        _SEEN[slot] = now
        least = least_other(slot, now)
        if least is None or self.nr_conns <= least:
            return cap
        return min(cap, least + 1)  # listen again once another holds as many as this one

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._cap = value

    def init_process(self) -> None:
        self._slot = claim_slot(os.getpid())
        try:
            super().init_process()  # runs the worker until it exits
        finally:
            if self._slot is not None:
                release_slot(self._slot)
