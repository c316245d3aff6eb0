"""/metrics: requests by route and status, enqueues by task, queue length and age, pools, dead letters."""

from __future__ import annotations

import json
import time

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from tasks import reliability
from tasks.orders import requeue_stuck
from tasks.telemetry import SENT_AT_HEADER


@pytest.fixture
def client(redis_server: str, mongo_server: str) -> FlaskClient:
    return create_app().test_client()


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_given_requests_then_counted_by_url_rule_and_status_not_raw_path(client: FlaskClient) -> None:
    before = scrape(client)
    assert client.get("/healthz").status_code == 200
    unknown = client.get("/api/v1/orders/ord_does_not_exist")
    after = scrape(client)

    assert value(after, "kirana_http_requests_total", route="/healthz", method="GET", status="200") == \
        value(before, "kirana_http_requests_total", route="/healthz", method="GET", status="200") + 1
    rule = "/api/v1/orders/<order_id>"
    status = str(unknown.status_code)
    assert value(after, "kirana_http_requests_total", route=rule, method="GET", status=status) == \
        value(before, "kirana_http_requests_total", route=rule, method="GET", status=status) + 1
    assert not any("ord_does_not_exist" in str(key) for key in after)
    assert value(after, "kirana_http_request_duration_seconds_count", route="/healthz", method="GET",
                 status="200") >= 1


def test_given_an_enqueue_then_counted_by_task_and_the_queue_shows_its_length_and_age(
        client: FlaskClient, redis_client) -> None:  # type: ignore[no-untyped-def]
    redis_client.delete("orders")
    before = scrape(client)
    assert value(before, "kirana_queue_length", queue="orders") == 0
    assert value(before, "kirana_queue_oldest_age_seconds", queue="orders") == 0

    assert reliability.enqueue(requeue_stuck, [1]) == "enqueued"
    raw = redis_client.lindex("orders", -1)
    try:
        assert json.loads(raw)["headers"][SENT_AT_HEADER] <= time.time()
        time.sleep(1.1)
        after = scrape(client)
    finally:
        redis_client.lrem("orders", 0, raw)

    assert value(after, "kirana_tasks_enqueued_total", task="orders.requeue_stuck", queue="orders") == \
        value(before, "kirana_tasks_enqueued_total", task="orders.requeue_stuck", queue="orders") + 1
    assert value(after, "kirana_queue_length", queue="orders") == 1
    assert value(after, "kirana_queue_oldest_age_seconds", queue="orders") >= 1.0
    for queue in ("payments", "audit", "backups"):
        assert ("kirana_queue_reserved", (("queue", queue),)) in after


def test_given_any_state_then_every_pool_has_a_live_workers_gauge(client: FlaskClient, redis_client) -> None:  # type: ignore[no-untyped-def]
    from workers.pools import POOLS

    samples = scrape(client)
    for pool in POOLS:
        assert ("kirana_pool_workers", (("pool", pool.name),)) in samples


def test_given_a_bad_webhook_signature_then_counted(client: FlaskClient) -> None:
    before = scrape(client)
    resp = client.post("/webhooks/razorpay", data=b"{}", headers={"X-Razorpay-Signature": "nope"})
    after = scrape(client)

    assert resp.status_code == 400
    assert value(after, "kirana_webhook_signature_failures_total", provider="razorpay") == \
        value(before, "kirana_webhook_signature_failures_total", provider="razorpay") + 1
    assert "kirana_outbox_backlog" in {name for name, _ in after}


def test_given_a_scrape_then_it_exposes_every_metric_the_rules_and_dashboard_use(client: FlaskClient) -> None:
    from tests.unit.test_monitoring import API_METRICS

    client.get("/healthz")
    client.post("/webhooks/razorpay", data=b"{}", headers={"X-Razorpay-Signature": "nope"})
    reliability.enqueue(requeue_stuck, [1])
    names = {name for name, _ in scrape(client)}
    # A family with no sample yet (no dead letter in a fresh database) still declares itself.
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        names.add(family.name + {"counter": "_total", "histogram": "_bucket"}.get(family.type, ""))

    assert names >= API_METRICS, API_METRICS - names


def test_given_a_run_once_job_finished_then_its_last_success_is_exposed_by_task(client: FlaskClient) -> None:  # type: ignore[no-untyped-def]
    from kirana import db, locks, redis_conn

    job = f"backups.prune_storage.test-{time.time_ns()}"
    lock = locks.acquire(redis_conn.client(), job, 60)
    assert lock is not None
    before = time.time()
    assert locks.record_run(db.database(), lock, "done")
    locks.release(redis_conn.client(), lock)

    at = value(scrape(client), "kirana_job_last_success_timestamp_seconds", task=job)

    assert before - 1 <= at <= time.time() + 1
