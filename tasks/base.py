"""The base task: retries for transient failures only, with backoff and jitter."""

from __future__ import annotations

import contextlib

import celery
import pymongo.errors
import redis.exceptions

from kirana import redis_conn
from kirana.config import settings

# Failures that go away by themselves: a database or broker that is briefly
# unreachable. Anything else is a bug or bad data and retrying would not help.
TRANSIENT: tuple[type[BaseException], ...] = (
    pymongo.errors.ConnectionFailure,
    pymongo.errors.AutoReconnect,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class KiranaTask(celery.Task):
    abstract = True
    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_backoff_max = settings().retry_backoff_max_s
    retry_jitter = True
    max_retries = settings().task_max_retries
    # Results are never read; see tasks.app.
    ignore_result = True


def publish_order_update(order_id: str, message: dict[str, object]) -> None:
    """Tell listeners (the WebSocket route) that an order changed.

    Best effort by design: the event is already stored, and an app that
    missed the message reads the order again.
    """
    import json

    with contextlib.suppress(redis.exceptions.RedisError):
        redis_conn.client().publish(f"kirana:order:{order_id}", json.dumps(message))
