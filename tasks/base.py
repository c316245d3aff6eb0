"""The base task: retries for transient failures only, a redelivery cap, dead letters.

- Retries: only for `TRANSIENT` errors, with exponential backoff and jitter,
  capped below the queue's visibility timeout (a long countdown would be
  held as an ETA and redelivered early); past `max_retries` the task fails.
- Redelivery cap: every delivery of a message is counted in Redis (per task
  id and retry number). A message that keeps coming back because its worker
  dies is dead-lettered instead of run again once the count passes the cap.
- A task that fails for good is recorded as a dead letter (tasks/reliability.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import celery
import kombu.exceptions
import pymongo.errors
import redis.exceptions

from kirana import dead_letters, redis_conn
from kirana.analytics import SCAN_LAG_MS
from kirana.config import settings
from tasks.queues import DELIVERY, queue_of

log = logging.getLogger(__name__)

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
    retry_jitter = True
    max_retries = settings().task_max_retries
    # Results are never read; see tasks.app.
    ignore_result = True

    @property
    def retry_backoff_max(self) -> int:
        """Capped by the queue: a retry waits as an ETA, and must not outlast the visibility timeout."""
        queue = queue_of(self.name or "")
        cap = DELIVERY[queue].max_countdown_s if queue else 60
        return min(settings().retry_backoff_max_s, cap)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if not request.called_directly and not request.is_eager and request.id:
            redelivered = bool((request.delivery_info or {}).get("redelivered"))
            deliveries = _count_delivery(request.id, request.retries or 0, redelivered=redelivered)
            if deliveries > settings().redelivery_cap:
                from tasks.reliability import dead_letter

                dead_letter(self, request.id, args, kwargs, exc_type="RedeliveryCapExceeded",
                            message=f"delivered {deliveries} times without finishing (cap "
                                    f"{settings().redelivery_cap}): its worker keeps dying",
                            traceback="", reason="redelivery_cap")
                return "dead-lettered"
        return super().__call__(*args, **kwargs)


def _count_delivery(task_id: str, retries: int, *, redelivered: bool) -> int:
    """How many times this message (task id, retry number) has been delivered, this one included.

    kombu's Redis transport marks every message it puts back (worker lost,
    visibility timeout, restore at shutdown) `redelivered`. A first delivery
    is therefore 1 without asking Redis: the round trip is paid only by a
    message that came back, which is the one the cap is about. The first
    delivery is added to the count when the first redelivery creates the key.
    """
    if not redelivered:
        return 1
    key = f"kirana:deliveries:{task_id}:{retries}"
    try:
        pipe = redis_conn.client().pipeline(transaction=False)
        pipe.set(key, 1, nx=True, ex=86_400)  # the first delivery, which was not counted
        pipe.incr(key)
        pipe.expire(key, 86_400)
        return int(pipe.execute()[1])
    except redis.exceptions.RedisError:
        return 0  # no count without Redis; the task itself will meet the same outage


# At most one analytics refresh is sent per this many ms however many orders change. It runs
# once the changes it was sent for are older than the scan's lag (kirana.analytics.SCAN_LAG_MS),
# so its one scan finds them: each changed order is read and summed once, in a batch.
ANALYTICS_DEBOUNCE_MS = 3000
ANALYTICS_SOON = "kirana:analytics:soon"


def publish_order_update(order_id: str, message: dict[str, object]) -> None:
    publish_order_updates(order_id, [message])


def publish_order_updates(order_id: str, messages: list[dict[str, object]]) -> None:
    """Tell listeners (the WebSocket route, store analytics) that an order changed, in one round trip.

    Best effort by design: the event is already stored, an app that missed
    the message reads the order again, and the analytics scan finds the order
    by its `updated_at_ms`.
    """
    if not messages:
        return
    with contextlib.suppress(redis.exceptions.RedisError):
        r = redis_conn.client()
        pipe = r.pipeline(transaction=False)
        for message in messages:
            pipe.publish(f"kirana:order:{order_id}", json.dumps(message))
        pipe.set(ANALYTICS_SOON, "1", nx=True, px=ANALYTICS_DEBOUNCE_MS)
        if pipe.execute()[-1]:
            _send_analytics_refresh(ANALYTICS_DEBOUNCE_MS + SCAN_LAG_MS)


def refresh_analytics_soon(delay_ms: int) -> None:
    """One analytics refresh in `delay_ms`, unless one is on its way (the same flag as a change's)."""
    with contextlib.suppress(redis.exceptions.RedisError):
        if redis_conn.client().set(ANALYTICS_SOON, "1", nx=True, px=max(1, delay_ms)):
            _send_analytics_refresh(delay_ms)


def _send_analytics_refresh(delay_ms: int) -> None:
    from tasks.app import app

    with contextlib.suppress(redis.exceptions.RedisError, kombu.exceptions.OperationalError):
        app.send_task("analytics.refresh", countdown=delay_ms / 1000)


__all__ = ["TRANSIENT", "KiranaTask", "dead_letters", "publish_order_update", "publish_order_updates"]
