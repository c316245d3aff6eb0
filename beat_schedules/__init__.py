"""Every periodic job, in one place.

Each entry carries `expires` a little under its interval, so a backlog after
an outage runs a job once rather than once per missed tick. Jobs run every
60 s or more would use crontab; the ones here are shorter.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

SCHEDULE: dict[str, dict[str, Any]] = {
    # Re-enqueue orders left "accepted"/"processing" past their lease: the
    # safety net for a message lost between the API's write and the broker.
    "orders-requeue-stuck": {
        "task": "orders.requeue_stuck",
        "schedule": 30.0,
        "options": {"expires": 25.0},
    },
    # Unpaid orders past their deadline give their stock back.
    "payments-expire-unpaid": {
        "task": "payments.expire_unpaid",
        "schedule": 30.0,
        "options": {"expires": 25.0},
    },
    # Re-read payments stuck in created/authorized from Razorpay; re-enqueue
    # lost payment orders and webhook events.
    "payments-reconcile": {
        "task": "payments.reconcile",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55.0},
    },
    # Daily backup at 02:30 IST (beat's timezone), then verify and prune
    # after it; run-once, so an overlapping manual run is skipped, not doubled.
    "backups-run-daily": {
        "task": "backups.run",
        "schedule": crontab(minute=30, hour=2),
        "options": {"expires": 3000.0},
    },
    "backups-verify-daily": {
        "task": "backups.verify",
        "schedule": crontab(minute=30, hour=4),
        "options": {"expires": 3000.0},
    },
    "backups-prune-daily": {
        "task": "backups.prune",
        "schedule": crontab(minute=45, hour=4),
        "options": {"expires": 3000.0},
    },
    # Finished records past their retention (kirana/retention.py, docs/retention.md), after the
    # backup has them: paced batches, run-once.
    "storage-prune-daily": {
        "task": "backups.prune_storage",
        "schedule": crontab(minute=15, hour=5),
        "options": {"expires": 3000.0},
    },
    # Offline sync batches still pending after SYNC_SWEEP_AFTER_S (a message lost
    # between the API's write and the broker) are applied again.
    "sync-sweep": {
        "task": "sync.sweep",
        "schedule": 30.0,
        "options": {"expires": 25.0},
    },
    # Store analytics: orders changed since the last run, in bounded batches (run-once).
    "analytics-refresh": {
        "task": "analytics.refresh",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55.0},
    },
    # Index products whose change no indexer run has taken yet (a lost message, Redis down at the
    # write); builds the first index of a fresh deployment.
    "search-sweep": {
        "task": "search.sweep",
        "schedule": 30.0,
        "options": {"expires": 25.0},
    },
    # A full rebuild at night: drops anything a partial update could have left behind.
    "search-reindex-nightly": {
        "task": "search.reindex",
        "schedule": crontab(hour=3, minute=30),
        "options": {"expires": 3600.0},
    },
    # Loyalty syncs lost between an order's change and the leaderboards queue.
    "leaderboards-sweep": {
        "task": "leaderboards.sweep",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55.0},
    },
    # Rebuild the current leaderboards from the ledger (and any Redis lost).
    "leaderboards-refresh": {
        "task": "leaderboards.refresh",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 280.0},
    },
}
