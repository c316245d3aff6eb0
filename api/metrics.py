"""/metrics for Prometheus: what the API process and the database know.

Counts that live in MongoDB (dead letters per task, the outbox backlog) are
read at scrape time by a collector, so every API process reports the same
numbers and nothing is lost when a worker process exits. The route is open,
as is usual for Prometheus; nginx does not expose it publicly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pymongo.errors
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pymongo.database import Database

from api.security import public
from kirana import db, dead_letters, outbox
from kirana.backups import catalog as backup_catalog

bp = Blueprint("metrics", __name__)


class StoreCollector:
    def collect(self) -> Iterator[Metric]:
        letters = CounterMetricFamily("kirana_dead_letters", "Tasks that gave up, per task", labels=["task"])
        backlog = GaugeMetricFamily("kirana_outbox_backlog", "Outbox entries waiting for the broker")
        try:
            database = db.database()
            for task, count in sorted(dead_letters.counts_by_task(database).items()):
                letters.add_metric([task], count)
            backlog.add_metric([], outbox.backlog(database))
        except pymongo.errors.PyMongoError:
            return  # a scrape during an outage shows the series missing, not zero
        yield letters
        yield backlog
        yield from _backup_metrics(database)


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


_registry = CollectorRegistry()
_registry.register(StoreCollector())  # type: ignore[arg-type]


@bp.get("/metrics")
@public
def metrics() -> Response:
    return Response(generate_latest(_registry), mimetype=CONTENT_TYPE_LATEST)
