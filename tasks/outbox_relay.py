"""The outbox relay: a small loop in its own process that sends due outbox entries.

    python -m tasks.outbox_relay

It is not a beat job on purpose: beat needs the broker to send anything, and
the relay exists for when the broker was down. The same loop runs the dispatch
sweep (tasks/dispatch.py): orders' follow-ups left unsent by a run that died. Entries go oldest first; an
entry is marked sent only after the broker took it.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import pymongo.errors

from kirana import db, logs, outbox, preflight
from kirana.config import settings
from tasks import dispatch
from tasks.app import app
from tasks.reliability import BROKER_DOWN

log = logging.getLogger("kirana.outbox")

BATCH = 200


def relay_once(limit: int = BATCH) -> int:
    """Send what is due; returns how many were sent. Stops at the first broker failure."""
    database = db.database()
    sent = 0
    for entry in outbox.due(database, limit=limit):
        try:
            with logs.bound(request_id=entry.get("request_id")):
                result = app.send_task(entry["task"], args=entry["args"], kwargs=entry["kwargs"],
                                       queue=entry.get("queue"), task_id=entry.get("send_task_id"))
        except BROKER_DOWN as exc:
            outbox.note_failure(database, entry["_id"], f"{type(exc).__name__}: {exc}")
            break
        outbox.mark_sent(database, entry["_id"], result.id)
        sent += 1
    return sent


def sweep_dispatch() -> int:
    """Orders' follow-ups that a run which died after its write left unsent (tasks/dispatch.py)."""
    try:
        swept = dispatch.sweep_once()
    except pymongo.errors.PyMongoError:
        raise
    except Exception:  # the relay's own work must go on; the next turn tries again
        log.exception("the dispatch sweep failed")
        return 0
    if swept:
        log.info("dispatched the left-behind follow-ups of %d orders", swept)
    return swept


def main(interval_s: float = 1.0) -> int:
    preflight.check(process="outbox relay")
    logs.configure(settings().log_level)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("outbox relay started")
    while not stop.is_set():
        try:
            sweep_dispatch()
            sent = relay_once()
            if sent:
                log.info("relayed %d outbox entries", sent)
                continue  # maybe more are due
        except pymongo.errors.PyMongoError as exc:
            log.warning("outbox relay cannot read MongoDB: %s", exc)
        stop.wait(interval_s)
    log.info("outbox relay stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
