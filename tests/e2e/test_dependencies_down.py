"""With Redis or MongoDB down the API answers 503 in the problem format and writes nothing."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from kirana import outbox
from kirana.permissions import Role
from stack import servers
from tests.harness import api_server

pytestmark = pytest.mark.e2e


def _order() -> dict:
    return {"store_id": "store-blr-indiranagar", "payment_method": "cod",
            "items": [{"sku": "AASHIRVAAD-ATTA-5KG", "qty": 1}]}


def test_with_redis_down_an_order_is_accepted_through_the_outbox_and_completed(stack, customer) -> None:  # type: ignore[no-untyped-def]
    # Given an API whose broker is gone (the relay and workers still reach the real one).
    ops = stack.user(Role.OPS)
    dead = servers.free_port()
    with api_server(stack.run_dir, stack.cfg, "api-noredis", REDIS_URL=f"redis://127.0.0.1:{dead}/0",
                    REDIS_TIMEOUT_S="0.5") as api:
        started = time.monotonic()
        resp = requests.post(f"http://127.0.0.1:{api.port}/api/v1/orders", json=_order(), timeout=30,
                             headers=customer.http.headers)
        took = time.monotonic() - started
        ready = requests.get(f"http://127.0.0.1:{api.port}/readyz", timeout=30, headers=ops.http.headers)

    # Then the order is accepted all the same, parked in the outbox, and completed by the relay.
    assert resp.status_code == 202, resp.text
    assert took < 15, f"took {took:.1f}s to fall back to the outbox"
    order_id = resp.json()["id"]
    entry = stack.db[outbox.OUTBOX].find_one({"order_id": order_id})
    assert entry is not None and entry["task"] == "orders.process"
    assert customer.wait_terminal(order_id)["status"] == "confirmed"
    assert stack.db[outbox.OUTBOX].find_one({"_id": entry["_id"]})["status"] == "sent"
    assert ready.status_code == 503 and "redis" in ready.json()["detail"]


def test_with_mongodb_down_the_api_answers_503(stack, customer) -> None:  # type: ignore[no-untyped-def]
    dead = servers.free_port()
    with api_server(stack.run_dir, stack.cfg, "api-nomongo", MONGO_URL=f"mongodb://127.0.0.1:{dead}",
                    MONGO_TIMEOUT_MS="500") as api:
        base = f"http://127.0.0.1:{api.port}"
        submit = requests.post(f"{base}/api/v1/orders", json=_order(), timeout=30, headers=customer.http.headers)
        show = requests.get(f"{base}/api/v1/orders/ord_x", timeout=30, headers=customer.http.headers)
        ready = requests.get(f"{base}/readyz", timeout=30)
        health = requests.get(f"{base}/healthz", timeout=30)

    for resp in (submit, show):
        assert resp.status_code == 503, resp.text
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.json()["dependency"] == "mongodb"
    # Nobody's token can be checked without MongoDB, so nobody gets the details (logs and /metrics say it).
    assert ready.status_code == 503 and ready.json()["detail"] == "a dependency or a worker pool is down"
    assert health.status_code == 200, "liveness must not depend on MongoDB"


def test_readiness_fails_when_a_pool_has_no_live_worker_and_recovers(stack) -> None:  # type: ignore[no-untyped-def]
    ops = stack.user(Role.OPS)
    stack.workers["audit"].signal(signal.SIGKILL)
    stack.workers["audit"].proc.wait(10)
    try:
        deadline = time.monotonic() + 3 * stack.cfg.worker_alive_window_s
        while time.monotonic() < deadline:
            ready = ops.http.get(stack.url("/readyz"), timeout=10)
            if ready.status_code == 503:
                break
            time.sleep(0.25)
        anonymous = requests.get(stack.url("/readyz"), timeout=10)
        assert ready.status_code == 503
        assert "audit" in ready.json()["detail"]
        assert ready.json()["checks"]["pools"]["audit"] == 0
        # Issue 20, item 12: anyone learns "not ready", not which pool or what is behind it.
        assert anonymous.status_code == 503 and "checks" not in anonymous.json()
        assert "audit" not in anonymous.text
    finally:
        stack.start_worker("audit")
    servers.wait_http(stack.url("/readyz"), timeout=60)
