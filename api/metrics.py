"""/metrics for Prometheus: what the API process and the database know.

Counts that live in MongoDB (dead letters per task, the outbox backlog) are
read at scrape time by a collector, so every API process reports the same
numbers and nothing is lost when a worker process exits. The route is open,
as is usual for Prometheus; nginx does not expose it publicly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pymongo.errors
import redis.exceptions
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from api.security import public
from kirana import db, dead_letters, outbox, redis_conn
from kirana.loyalty import boards

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


@bp.get("/metrics")
@public
def metrics() -> Response:
    return Response(generate_latest(_registry), mimetype=CONTENT_TYPE_LATEST)
