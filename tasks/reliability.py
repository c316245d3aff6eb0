"""Dead letters, replays, the outbox, and jobs that run once — the Celery side.

The domain halves live in kirana.dead_letters, kirana.outbox and kirana.locks.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import celery
import kombu.exceptions
import redis.exceptions
from celery.signals import task_failure

from kirana import db, dead_letters, locks, logs, outbox, redis_conn
from tasks import faults
from tasks.app import app

log = logging.getLogger(__name__)

# BatchPublishError: a pipelined publish (`producer.batch`, see enqueue) failed at its flush, and
# whether Redis took the messages is unknown: the outbox sends them again (tasks are idempotent).
BROKER_DOWN = (kombu.exceptions.OperationalError, kombu.exceptions.BatchPublishError,
               redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

F = TypeVar("F", bound=Callable[..., Any])


def dead_letter(task: celery.Task, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any], *,
                exc_type: str, message: str, traceback: str, reason: str) -> None:
    request = task.request
    queue = (request.delivery_info or {}).get("routing_key") if request else None
    letter = dead_letters.record(
        db.database(), task_id=task_id, task=task.name, args=args, kwargs=kwargs, queue=queue,
        exc_type=exc_type, message=message, traceback=traceback, attempts=(request.retries or 0) + 1,
        reason=reason,
    )
    log.error("dead letter %s: %s%s failed for good (%s: %s)", letter["_id"], task.name, tuple(args), exc_type,
              message)


@task_failure.connect
def _record_failure(sender: celery.Task | None = None, **signal: Any) -> None:
    """Retries exhausted or a non-retryable error: keep the work for ops."""
    task_id = signal.get("task_id")
    if sender is None or task_id is None or not sender.name or sender.name.startswith("celery."):
        return
    exception = signal.get("exception")
    try:
        dead_letter(sender, task_id, signal.get("args") or (), signal.get("kwargs") or {},
                    exc_type=type(exception).__name__, message=str(exception),
                    traceback=str(signal.get("einfo") or ""), reason="failed")
    except Exception:  # the failure is in the worker log either way; never mask it
        log.exception("could not record the dead letter of %s", task_id)


def replay(letter_id: str, *, by: str | None) -> dict[str, Any]:
    """Re-enqueue a dead letter's task with its arguments under a new task id."""
    database = db.database()
    letter = dead_letters.get(database, letter_id)
    new_id = dead_letters.new_task_id()
    dead_letters.mark_replayed(database, letter_id, new_task_id=new_id, by=by)
    try:
        app.send_task(letter["task"], args=letter["args"], kwargs=letter["kwargs"], task_id=new_id,
                      queue=letter.get("queue"))
    except BROKER_DOWN:
        dead_letters.reopen(database, letter_id)
        raise
    return dead_letters.get(database, letter_id)


def replay_selection(selection: dead_letters.Selection, *, by: str | None, per_second: float,
                     sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                     batch: int = 100) -> int:
    """Replay every open letter of `selection`, oldest first, at most `per_second`; how many.

    Paced so that replaying ten thousand does not flood a pool. A letter another
    hand closed meanwhile is passed over; a broker failure stops the run (what was
    replayed stays replayed, the rest stays open for a retry).
    """
    database = db.database()
    interval = 1.0 / per_second
    next_at = clock()
    replayed = 0
    while ids := dead_letters.open_ids(database, selection, limit=batch):
        for letter_id in ids:
            wait = next_at - clock()
            if wait > 0:
                sleep(wait)
            next_at = max(next_at, clock() - interval) + interval  # no burst after a slow step
            try:
                replay(letter_id, by=by)
            except dead_letters.AlreadyClosed:
                continue
            replayed += 1
    return replayed


def enqueue(task: celery.Task, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> str:
    """Enqueue after a write: to the broker, or to the outbox when the broker is down.

    Returns "enqueued" or "outbox". A MongoDB failure writing the outbox entry
    propagates: then the caller's write must be undone.
    """
    try:
        # One pooled producer, and the message and its task-sent event in one pipelined round trip.
        with app.producer_or_acquire() as producer, producer.batch(max_size=8):
            task.apply_async(args=list(args), kwargs=dict(kwargs or {}), producer=producer)
        return "enqueued"
    except BROKER_DOWN as exc:
        outbox.add(db.database(), task.name, args, kwargs, reason=f"broker_unavailable: {type(exc).__name__}",
                   request_id=logs.current("request_id"))
        return "outbox"


def enqueue_intents(messages: Sequence[tuple[str, Sequence[Any], str]]) -> str:
    """Publish (task name, args, task id) messages in one pipelined round trip, or all to the outbox.

    The ids are deterministic (tasks/dispatch.py), and the outbox keeps them: a message
    sent twice runs under one id, and its task is idempotent either way.
    """
    if not messages:
        return "enqueued"
    try:
        copies = 2 if faults.hit(faults.DISPATCH_TWICE) else 1
        with app.producer_or_acquire() as producer, producer.batch(max_size=len(messages) * 2 * copies):
            for name, args, task_id in messages * copies:
                app.send_task(name, args=list(args), task_id=task_id, producer=producer)
        return "enqueued"
    except BROKER_DOWN as exc:
        reason = f"broker_unavailable: {type(exc).__name__}"
        request_id = logs.current("request_id")
        for name, args, task_id in messages:
            outbox.add(db.database(), name, args, None, reason=reason, request_id=request_id, task_id=task_id)
        return "outbox"


def run_once(name: str, ttl_s: int) -> Callable[[F], F]:
    """Skip this run when another run of the same job holds the lock; say so."""

    def wrap(body: F) -> F:
        @functools.wraps(body)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            r = redis_conn.client()
            lock = locks.acquire(r, name, ttl_s)
            if lock is None:
                held_by = locks.holder(r, name)
                log.warning("%s skipped: another run holds the lock (token %s)", name, held_by)
                return {"skipped": f"{name} is already running (token {held_by})"}
            try:
                result = body(*args, **kwargs)
                locks.record_run(db.database(), lock, "done")
                return result
            finally:
                locks.release(r, lock)

        return guarded  # type: ignore[return-value]

    return wrap


def enqueue_many(task: celery.Task, arg_lists: Sequence[Sequence[Any]], *, batch_size: int = 500) -> str:
    """Enqueue one task per argument list, pipelined to the broker; or all of them to the outbox.

    For fan-out (one message per store, customer or product): kombu buffers the
    publishes of `producer.batch` in a Redis pipeline, one round trip per
    `batch_size` messages. When the broker fails part-way, every message goes to
    the outbox, so some may run twice: fan-out tasks take ids and re-read, as
    every task here must.
    """
    if not arg_lists:
        return "enqueued"
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=batch_size):
            for args in arg_lists:
                task.apply_async(args=list(args), producer=producer)
        return "enqueued"
    except BROKER_DOWN as exc:
        reason = f"broker_unavailable: {type(exc).__name__}"
        request_id = logs.current("request_id")
        for args in arg_lists:
            outbox.add(db.database(), task.name, args, None, reason=reason, request_id=request_id)
        return "outbox"
