"""/metrics for Prometheus: what the API process, Redis and the database know.

Counts that live in MongoDB (dead letters per task, the outbox backlog) and
Redis (queue lengths and ages, reserved tasks, live workers per pool) are read
at scrape time by a collector, so every API process reports the same numbers
and nothing is lost when a process exits. Request, enqueue and webhook
counters are kept per process; under gunicorn (several worker processes) set
PROMETHEUS_MULTIPROC_DIR (stack/gunicorn_conf.py does) so a scrape sums them
over every process instead of showing whichever process answered.
The route is open, as is usual for Prometheus; nginx does not expose it publicly.

Celery's own metrics (tasks sent, received, succeeded, failed, runtimes, worker
heartbeats) come from celery-exporter, not from here (docs/deploy.md lists both).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pymongo.errors
import redis.exceptions
from celery.signals import before_task_publish
from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pymongo.database import Database

from api import tracing
from api.contract import documented
from api.health import STALL_AFTER_S
from api.security import public
from kirana import db, dead_letters, liveness, locks, outbox, redis_conn, search, sync
from kirana.backups import catalog as backup_catalog
from kirana.config import settings
from kirana.loyalty import boards
from tasks.queues import Queue
from tasks.telemetry import SENT_AT_HEADER
from workers.pools import POOLS

bp = Blueprint("metrics", __name__)

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class StoreCollector:
    def collect(self) -> Iterator[Metric]:
        letters = CounterMetricFamily("kirana_dead_letters", "Tasks that gave up, per task", labels=["task"])
        backlog = GaugeMetricFamily("kirana_outbox_backlog", "Outbox entries waiting for the broker")
        sync_lag = GaugeMetricFamily("kirana_sync_oldest_pending_seconds",
                                     "Age of the oldest offline sync batch not yet applied (0 when none)")
        lag = GaugeMetricFamily("kirana_search_index_lag_seconds",
                                "Age of the oldest product change not yet in the search index (0 when none)")
        try:
            database = db.database()
            for task, count in sorted(dead_letters.counts_by_task(database).items()):
                letters.add_metric([task], count)
            backlog.add_metric([], outbox.backlog(database))
            sync_lag.add_metric([], sync.oldest_pending_age_s(database))
            lag.add_metric([], search.lag_seconds(database))
        except pymongo.errors.PyMongoError:
            return  # a scrape during an outage shows the series missing, not zero
        yield letters
        yield backlog
        yield sync_lag
        yield lag
        yield from _backup_metrics(database)
        yield from _job_metrics(database)


def _job_metrics(database: Database) -> Iterator[Metric]:
    """When each run-once job (beat's daily ones among them) last finished: KiranaDailyJobStale reads it."""
    try:
        runs = locks.last_runs(database)
    except pymongo.errors.PyMongoError:
        return
    last = GaugeMetricFamily("kirana_job_last_success_timestamp_seconds",
                             "When a run-once job last finished", labels=["task"])
    for job, at_ms in sorted(runs.items()):
        last.add_metric([job], at_ms / 1000)
    yield last


def _backup_metrics(database: Database) -> Iterator[Metric]:
    """The last backup runs, from the catalog (kirana.backups.catalog); absent until the first run."""
    try:
        ok = backup_catalog.last(database, backup_catalog.SUCCEEDED)
        failed = backup_catalog.last(database, backup_catalog.FAILED)
    except pymongo.errors.PyMongoError:
        return
    if ok is not None:
        yield _gauge("kirana_backup_last_success_timestamp_seconds", "When the last successful backup finished",
                     ok["finished_at_ms"] / 1000)
        yield _gauge("kirana_backup_last_duration_seconds", "How long the last successful backup took",
                     ok.get("duration_ms", 0) / 1000)
        yield _gauge("kirana_backup_last_size_bytes", "Size on disk of the last successful backup", ok.get("bytes", 0))
    if failed is not None:
        yield _gauge("kirana_backup_last_failure_timestamp_seconds", "When the last failed backup gave up",
                     failed["finished_at_ms"] / 1000)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge


def _oldest_age_s(raw: str | None, now: float) -> float:
    """Age of a queued message from the header tasks.telemetry stamps at publish (0 without one)."""
    if not raw:
        return 0.0
    try:
        sent_at = float(json.loads(raw).get("headers", {}).get(SENT_AT_HEADER) or 0)
    except (ValueError, TypeError, AttributeError):
        return 0.0
    return max(0.0, now - sent_at) if sent_at else 0.0


class QueueCollector:
    """Per queue: waiting messages, age of the oldest, and messages taken by a worker but not acked.

    kombu LPUSHes and workers BRPOP, so the oldest waiting message is at index -1.
    Reserved (prefetched or running) messages are not in the list: they sit in the
    queue's own unacked hash (tasks/queues.transport_options), counted here apart.
    """

    def collect(self) -> Iterator[Metric]:
        length = GaugeMetricFamily("kirana_queue_length", "Messages waiting in the queue", labels=["queue"])
        age = GaugeMetricFamily("kirana_queue_oldest_age_seconds",
                                "Age of the oldest waiting message (0 when the queue is empty)", labels=["queue"])
        reserved = GaugeMetricFamily("kirana_queue_reserved",
                                     "Messages taken by a worker and not yet acked (prefetched or running)",
                                     labels=["queue"])
        workers = GaugeMetricFamily("kirana_pool_workers", "Workers of the pool that beat recently",
                                    labels=["pool"])
        stalled = GaugeMetricFamily("kirana_pool_stalled",
                                    "1 when the pool has queued work and finished none within its window",
                                    labels=["pool"])
        queues = [q.value for q in Queue]
        try:
            r = redis_conn.client()
            pipe = r.pipeline(transaction=False)
            for queue in queues:
                pipe.llen(queue)
                pipe.lindex(queue, -1)
                pipe.hlen(f"unacked:{queue}")
            answers = pipe.execute()
            health = liveness.pool_health(r, [p.name for p in POOLS], alive_window_s=settings().worker_alive_window_s,
                                          stall_after_s=STALL_AFTER_S)
        except redis.exceptions.RedisError:
            return
        now = time.time()
        for i, queue in enumerate(queues):
            length.add_metric([queue], int(answers[3 * i]))
            age.add_metric([queue], _oldest_age_s(answers[3 * i + 1], now))
            reserved.add_metric([queue], int(answers[3 * i + 2]))
        for pool, report in health.items():
            workers.add_metric([pool], float(report["workers"]))  # type: ignore[arg-type]
            stalled.add_metric([pool], 1.0 if report["verdict"] == "stalled" else 0.0)
        yield from (length, age, reserved, workers, stalled)


class LeaderboardCollector:
    def collect(self) -> Iterator[Metric]:
        refreshed = GaugeMetricFamily("kirana_leaderboard_last_refresh_timestamp_seconds",
                                      "When the leaderboards were last rebuilt from the ledger (unix time)")
        try:
            at = boards.last_refresh(redis_conn.client())
        except redis.exceptions.RedisError:
            return
        if at is not None:
            refreshed.add_metric([], at)
            yield refreshed


_registry = CollectorRegistry()
_registry.register(StoreCollector())  # type: ignore[arg-type]
_registry.register(LeaderboardCollector())  # type: ignore[arg-type]
_registry.register(QueueCollector())  # type: ignore[arg-type]
if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    prom_multiprocess.MultiProcessCollector(_registry)
    _own: CollectorRegistry | None = None  # values go to files in MULTIPROC_DIR, summed at scrape
else:
    _own = _registry

REQUESTS = Counter("kirana_http_requests", "HTTP requests answered, by route (URL rule), method and status",
                   ["route", "method", "status"], registry=_own)
LATENCY = Histogram("kirana_http_request_duration_seconds", "Time to answer an HTTP request, by route and status",
                    ["route", "method", "status"], registry=_own,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
ENQUEUED = Counter("kirana_tasks_enqueued", "Task messages this process published to the broker, by task",
                   ["task", "queue"], registry=_own)
WEBHOOK_SIGNATURE_FAILURES = Counter("kirana_webhook_signature_failures",
                                     "Webhooks refused for a missing or wrong signature", ["provider"], registry=_own)


def _observe(response: Response) -> Response:
    elapsed = tracing.elapsed_s()  # started by api/tracing.py, before security.enforce
    if elapsed is None:
        return response
    # The URL rule, not the path: /api/v1/orders/<order_id> is one series, not one per order.
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    labels = (rule, request.method, str(response.status_code))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(elapsed)
    return response


def _count_publish(sender: str | None = None, routing_key: str | None = None, **_: Any) -> None:
    ENQUEUED.labels(sender or "unknown", routing_key or "unknown").inc()


def instrument(app: Flask) -> None:
    """Time every request and count every task the API publishes."""
    app.after_request(_observe)
    # Only the API process counts its enqueues here; celery-exporter sees every publisher's task-sent events.
    before_task_publish.connect(_count_publish, weak=False)


@bp.get("/metrics")
@public
@documented(ok={200: "text/plain"}, tags=("operations",))
def metrics() -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(generate_latest(_registry), mimetype=CONTENT_TYPE_LATEST)
