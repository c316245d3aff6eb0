"""Request ids across the queues, and JSON logs in workers and beat.

- Publishing (API, worker or relay): the request id bound in the logging
  context goes into the message's headers, unless the caller set one.
- Running: a worker binds the task's id and name, the request id from the
  headers and the order/payment id from the task's arguments, so every
  line the task logs (and every task it enqueues) carries them.
"""

from __future__ import annotations

import inspect
import logging
from functools import cache
from typing import Any

import celery
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from kirana import logs
from kirana.config import settings

# Arguments whose values are worth a log field: tasks take ids, never documents.
_ID_ARGS = ("order_id", "payment_id", "attempt_id", "event_id", "customer_id", "store_id")


@setup_logging.connect
def _json_logs(loglevel: Any = None, **_: Any) -> None:
    """Celery skips its own logging set-up when this signal has a receiver."""
    logs.configure(loglevel or settings().log_level)
    # Celery's "Task received" line repeats what its "succeeded"/"failed" line (kept, with the
    # task's ids bound) says; one JSON line less per task is ~8% of a no-op task's CPU.
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)


@before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None or headers.get(logs.REQUEST_ID_HEADER):
        return
    rid = logs.current("request_id")
    if rid:
        headers[logs.REQUEST_ID_HEADER] = rid


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: celery.Task | None = None, args: Any = None,
               kwargs: Any = None, **_: Any) -> None:
    logs.clear()
    if task is None:
        return
    ids: dict[str, Any] = {"task_id": task_id, "task_name": task.name,
                           "request_id": getattr(task.request, logs.REQUEST_ID_HEADER, None)}
    ids.update(_ids_in(task, tuple(args or ()), dict(kwargs or {})))
    logs.bind_ids(**ids)


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    logs.clear()


def _ids_in(task: celery.Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = _parameters(task.name)
    found = {name: kwargs[name] for name in _ID_ARGS if isinstance(kwargs.get(name), str)}
    for name, value in zip(names, args, strict=False):
        if name in _ID_ARGS and isinstance(value, str):
            found.setdefault(name, value)
    return found


@cache
def _parameters(task_name: str) -> tuple[str, ...]:
    from tasks.app import app

    task = app.tasks.get(task_name)
    if task is None:
        return ()
    try:
        return tuple(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return ()
