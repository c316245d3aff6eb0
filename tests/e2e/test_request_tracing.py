"""One request id, from the API's log through every task of the order in the workers' logs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kirana import db as collections
from kirana.seed import STORES
from tests.harness import eventually

pytestmark = pytest.mark.e2e

STORE = STORES[0]["_id"]


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


def _lines_with(run_dir: Path, pattern: str, request_id: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(run_dir.glob(pattern)):
        found += [dict(line, _file=path.name) for line in _json_lines(path) if line.get("request_id") == request_id]
    return found


def _cod_order(stack) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    product = stack.db[collections.PRODUCTS].find_one({"store_id": STORE, "stock": {"$gte": 20}})
    return {"store_id": STORE, "items": [{"sku": product["sku"], "qty": 1}], "payment_method": "cod"}


def test_one_request_id_finds_every_task_of_the_order(stack, customer) -> None:  # type: ignore[no-untyped-def]
    rid = f"trace-{uuid.uuid4().hex}"
    resp = customer.http.post(customer.url("/api/v1/orders"), json=_cod_order(stack),
                              headers={"X-Request-ID": rid}, timeout=10)
    assert resp.status_code == 202
    assert resp.headers["X-Request-ID"] == rid
    order_id = resp.json()["id"]
    assert customer.wait_terminal(order_id)["status"] == "confirmed"

    run_dir = Path(stack.run_dir)
    # The API writes its lines in batches, at most 0.1 s late (kirana.logs.BufferedLineHandler).
    api_lines = eventually(lambda: _lines_with(run_dir, "api.log", rid), timeout=5, what="the API's request line")
    assert any(line.get("route") == "/api/v1/orders" and line.get("status") == 202 for line in api_lines), api_lines

    # The confirmation's notification is planned and sent last, in its order_event task; wait for its line.
    wanted = {"orders.process", "notifications.order_event", "leaderboards.sync_order"}
    deadline = time.monotonic() + 15
    while True:
        worker_lines = _lines_with(run_dir, "worker-*.log", rid)
        seen = {line.get("task_name") for line in worker_lines}
        if wanted <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted <= seen, f"tasks seen with {rid}: {sorted(s for s in seen if s)}"
    # The orders pool's lines also name the order.
    process_lines = [line for line in worker_lines if line.get("task_name") == "orders.process"]
    assert process_lines and all(line.get("order_id") == order_id for line in process_lines)
    assert all(line.get("task_id") for line in worker_lines)


def test_a_missing_or_unsafe_request_id_is_replaced_by_a_generated_one(stack) -> None:  # type: ignore[no-untyped-def]
    import requests

    plain = requests.get(stack.url("/healthz"), timeout=5)
    given = requests.get(stack.url("/healthz"), headers={"X-Request-ID": "bad id \"quoted\" " + "x" * 200}, timeout=5)
    for resp in (plain, given):
        rid = resp.headers.get("X-Request-ID", "")
        assert len(rid) == 32 and rid.isalnum(), rid
    assert plain.headers["X-Request-ID"] != given.headers["X-Request-ID"]
