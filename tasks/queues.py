"""The queues, one per kind of work; deploy files and the pool table follow this list."""

from __future__ import annotations

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


# A task named "<prefix>.<verb>" goes to the queue of its prefix.
ROUTES: dict[str, dict[str, str]] = {f"{queue.value}.*": {"queue": queue.value} for queue in Queue}
