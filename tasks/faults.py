"""Fault-injection points for the chaos suite, off unless KIRANA_FAULTS names them.

    KIRANA_FAULTS="kill-before-dispatch=0.05,lose-insert-reply=0.2,dispatch-twice=1"

Each point fires with its probability. Production never sets the variable; a
test that wants a fault in the right place (between a write and what follows
it) sets it for the processes it starts. Read once per process.
"""

from __future__ import annotations

import functools
import os
import random
import signal

KILL_BEFORE_DISPATCH = "kill-before-dispatch"  # a worker dies between a move's write and its dispatch
LOSE_INSERT_REPLY = "lose-insert-reply"  # the order's insert landed, its reply is lost
DISPATCH_TWICE = "dispatch-twice"  # every follow-up is published twice (a publish retried after a lost reply)
POINTS = frozenset({KILL_BEFORE_DISPATCH, LOSE_INSERT_REPLY, DISPATCH_TWICE})


@functools.cache
def armed() -> dict[str, float]:
    found: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in os.environ.get("KIRANA_FAULTS", "").split(","))):
        name, _, chance = part.partition("=")
        if name not in POINTS:
            raise ValueError(f"KIRANA_FAULTS: unknown fault point {name!r} (known: {sorted(POINTS)})")
        found[name] = float(chance or 1)
    return found


def hit(point: str) -> bool:
    chance = armed().get(point, 0.0)
    return chance > 0 and random.random() < chance


def kill_here(point: str) -> None:
    """SIGKILL this process when `point` fires: no cleanup, no ack, as the OOM killer would.

    Only on a message's first delivery: the fault is "a worker died once here", and the
    redelivery must be free to finish. Firing on redeliveries too would, now and then, kill
    one message past the redelivery cap, and dead-lettering a message whose worker keeps
    dying is the right answer to a different fault (tests/chaos/test_poison_message.py).
    """
    if hit(point) and not _redelivered():
        os.kill(os.getpid(), signal.SIGKILL)


def _redelivered() -> bool:
    from celery import current_task  # only where a fault is armed; the relay's sweep has no task

    request = getattr(current_task, "request", None)
    return bool(request is not None and (request.delivery_info or {}).get("redelivered"))
