"""The Celery app and all of its configuration.

Workers start with ``celery -A tasks.app worker -Q <queue> -n <pool>@<pool>.%h``
(see workers/); the API imports this module only to enqueue.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, celeryd_init
from kombu import Exchange
from kombu import Queue as KombuQueue

from beat_schedules import SCHEDULE
from kirana import preflight
from kirana.config import settings
from tasks import (
    broker,
    telemetry,  # noqa: F401  (stamps every published message with its send time)
    tracing,  # noqa: F401  (connects the logging and request-id signals)
)
from tasks.queues import PRIORITY_STEPS, ROUTES, Queue, transport_options

# Task modules, imported explicitly so a worker registers every task the
# routes and the schedule name (tests/unit/test_celery_config.py checks it).
TASK_MODULES = [
    "tasks.orders", "tasks.payments", "tasks.webhooks", "tasks.notifications", "tasks.audit", "tasks.heartbeat",
    "tasks.reliability", "tasks.dead_letters", "tasks.backups", "tasks.sync", "tasks.analytics",
    "tasks.search", "tasks.leaderboards",
]


SOFT_SHUTDOWN_S = 20


def make_celery() -> Celery:
    cfg = settings()
    # Extra task modules for a deployment or a test stack (the chaos suite's poison task).
    extra = [m for m in os.environ.get("KIRANA_EXTRA_TASK_MODULES", "").split(",") if m]
    app = Celery("kirana", include=[*TASK_MODULES, *extra])
    app.conf.update(
        broker_url=cfg.redis_url,
        # kombu's Redis transport and Celery's consumer minus two per-message costs (tasks/broker.py).
        broker_transport=broker.TRANSPORT,
        worker_consumer=broker.CONSUMER,
        # Order state lives in MongoDB; nobody reads task results, and a
        # result backend costs ~23% per task.
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[KombuQueue(q.value, Exchange(q.value, type="direct"), routing_key=q.value) for q in Queue],
        task_routes=ROUTES,
        task_default_queue=Queue.ORDERS.value,
        # A task whose name matches no route must not invent a queue no pool reads.
        task_create_missing_queues=False,
        # Ack after the work, and give the message back if the worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": cfg.visibility_timeout_s,
            "priority_steps": PRIORITY_STEPS,
            "socket_timeout": cfg.redis_timeout_s,
            "socket_connect_timeout": cfg.redis_timeout_s,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=cfg.redis_timeout_s,
        # The API must answer 503 quickly when Redis is down, not hang.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Defaults for tasks that set none; each task sets its own.
        task_soft_time_limit=60,
        task_time_limit=90,
        # SIGTERM: let running tasks finish for this long (compose's
        # stop_grace_period is longer), then requeue what is left.
        worker_soft_shutdown_timeout=SOFT_SHUTDOWN_S,
        # Events for Flower and celery-exporter.
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule=SCHEDULE,
        timezone="Asia/Kolkata",
        enable_utc=True,
        # tasks/tracing.py sets up JSON logging instead (the setup_logging signal).
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery()


@celeryd_init.connect
def refuse_development_secrets(sender: str | None = None, **_: Any) -> None:
    """A worker outside development with a development secret exits before it takes a task."""
    preflight.check(process=f"worker {sender or ''}".strip())


@beat_init.connect
def refuse_development_secrets_in_beat(**_: Any) -> None:
    preflight.check(process="beat")


@celeryd_init.connect
def per_pool_delivery(sender: str | None = None, conf: Any = None, **_: Any) -> None:
    """A worker named ``<pool>@host`` takes its queue's redelivery settings (tasks/queues.py)."""
    pool = (sender or "").split("@", 1)[0]
    if conf is not None and pool in {q.value for q in Queue}:
        conf.broker_transport_options = transport_options(Queue(pool), socket_timeout_s=settings().redis_timeout_s)
