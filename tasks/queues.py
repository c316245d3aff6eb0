"""The queues, one per kind of work; deploy files and the pool table follow this list."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Queue(StrEnum):
    ORDERS = "orders"
    PAYMENTS = "payments"
    WEBHOOKS = "webhooks"
    SEARCH = "search"
    LEADERBOARDS = "leaderboards"
    BACKUPS = "backups"
    NOTIFICATIONS = "notifications"
    AUDIT = "audit"
    SYNC = "sync"
    ANALYTICS = "analytics"


# A task named "<prefix>.<verb>" goes to the queue of its prefix.
ROUTES: dict[str, dict[str, str]] = {f"{queue.value}.*": {"queue": queue.value} for queue in Queue}


@dataclass(frozen=True)
class Delivery:
    """How a queue's messages are redelivered.

    visibility_timeout_s: a message a worker took but never acked (the worker
    died) goes back on the queue after this; above the longest task of the
    queue, or a slow task would run twice. With restores checked every
    RESTORE_INTERVAL_S, a dead worker's task is back within
    visibility_timeout_s + RESTORE_INTERVAL_S.
    max_countdown_s: the longest retry delay. A retry waits in the worker as an
    ETA, unacked, so it must stay well under the visibility timeout.
    """

    visibility_timeout_s: int
    max_countdown_s: int


RESTORE_INTERVAL_S = 5

DELIVERY: dict[Queue, Delivery] = {
    Queue.ORDERS: Delivery(60, 20),
    Queue.PAYMENTS: Delivery(120, 45),
    Queue.WEBHOOKS: Delivery(60, 20),
    Queue.SEARCH: Delivery(600, 120),
    Queue.LEADERBOARDS: Delivery(600, 120),
    Queue.BACKUPS: Delivery(3600, 300),
    Queue.NOTIFICATIONS: Delivery(120, 45),
    Queue.AUDIT: Delivery(60, 20),
    Queue.SYNC: Delivery(120, 45),
    Queue.ANALYTICS: Delivery(600, 120),
}


def queue_of(task_name: str) -> Queue | None:
    prefix = task_name.split(".", 1)[0]
    return Queue(prefix) if prefix in {q.value for q in Queue} else None


def unacked_key(queue: Queue) -> str:
    """The hash of `queue`'s messages taken by a worker and not yet acked (per queue: see below)."""
    return f"unacked:{queue.value}"


# A message a worker has taken off its queue but not yet recorded as unacked lives, for that
# instant, in the worker's in-flight list (tasks/broker.py). The worker holds a lease while it
# lives; a list whose lease lapsed is moved back onto the queue by any live worker of the queue.
INFLIGHT_LEASE_S = 3 * RESTORE_INTERVAL_S


def inflight_key(queue: str, consumer: str) -> str:
    """The list a worker's channel (`consumer`) moves each message of `queue` into as it takes it."""
    return f"inflight:{queue}:{consumer}"


def inflight_lease_key(queue: str, consumer: str) -> str:
    return f"inflight_lease:{queue}:{consumer}"


def inflight_consumers_key(queue: str) -> str:
    """The set of consumers that have an in-flight list for `queue` (the rescuer's index)."""
    return f"inflight_consumers:{queue}"


# Kirana gives no task a priority: one list per queue, so a worker takes from exactly one key
# (BLMOVE moves from one list only; kombu's default priority steps make four lists per queue).
PRIORITY_STEPS = [0]


def transport_options(queue: Queue, *, socket_timeout_s: float) -> dict[str, object]:
    """Broker transport options for a worker of `queue`'s pool.

    The unacked bookkeeping keys are per queue: kombu restores every message
    in its unacked index older than its own visibility timeout, so a shared
    index would let the orders pool's short timeout restore a backup that is
    still running.
    """
    delivery = DELIVERY[queue]
    return {
        "visibility_timeout": delivery.visibility_timeout_s,
        "unacked_key": unacked_key(queue),
        "unacked_index_key": f"unacked_index:{queue.value}",
        "unacked_mutex_key": f"unacked_mutex:{queue.value}",
        "unacked_restore_interval": RESTORE_INTERVAL_S,
        "unacked_restore_throttle": 1,
        "priority_steps": PRIORITY_STEPS,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
    }
