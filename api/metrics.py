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

from api.contract import documented
from api.security import public
from kirana import db, dead_letters, outbox

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


_registry = CollectorRegistry()
_registry.register(StoreCollector())  # type: ignore[arg-type]


@bp.get("/metrics")
@public
@documented(ok={200: "text/plain"}, tags=("operations",))
def metrics() -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(generate_latest(_registry), mimetype=CONTENT_TYPE_LATEST)
