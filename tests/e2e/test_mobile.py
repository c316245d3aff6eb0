"""The mobile backend over HTTP with real workers: devices, carts, offline sync, store analytics."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from kirana import analytics, outbox, sync
from kirana import db as collections
from kirana.clock import now_ms
from kirana.permissions import Role
from kirana.seed import STORES
from stack import servers
from tasks.app import app
from tests.harness import Client, api_server
from tests.harness import eventually as _eventually

pytestmark = pytest.mark.e2e

STORE = STORES[0]["_id"]


def _product(stack, *, price: int = 5000, stock: int = 100, store: str = STORE, category: str = "Test") -> str:  # type: ignore[no-untyped-def]
    """A product of this test's own, so changing its price disturbs no other test."""
    sku = f"T{uuid.uuid4().hex[:10].upper()}"
    stack.db[collections.PRODUCTS].insert_one({
        "_id": f"{store}:{sku}", "store_id": store, "sku": sku, "name": f"Test {sku}", "category": category,
        "price_paise": price, "stock": stock, "updated_at_ms": now_ms()})
    return sku


def _device(client: Client, token: str | None = None) -> dict[str, Any]:
    resp = client.http.post(client.url("/api/v1/devices"), timeout=10, json={
        "platform": "android", "push_token": token or f"tok-{uuid.uuid4().hex}", "app_version": "3.2.1"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _op(op_id: str, kind: str, seq: int, at_ms: int | None = None, **data: Any) -> dict[str, Any]:
    return {"op_id": op_id, "kind": kind, "seq": seq, "client_at_ms": at_ms or now_ms() - 60_000, "data": data}


def _send(client: Client, device_id: str, ops: list[dict[str, Any]], base: str | None = None,
          **extra: Any) -> requests.Response:
    url = f"{base or client.base_url}/api/v1/sync"
    return client.http.post(url, json={"device_id": device_id, "ops": ops, **extra}, timeout=30)


def _applied(client: Client, batch_id: str, timeout: float = 20) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        shown = client.http.get(client.url(f"/api/v1/sync/{batch_id}"), timeout=10).json()
        return shown if shown["status"] == "applied" else None

    return _eventually(probe, timeout, what=f"batch {batch_id} applied")


def _cart(client: Client, store: str = STORE) -> dict[str, Any]:
    resp = client.http.get(client.url(f"/api/v1/carts/{store}"), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- devices -----------------------------------------------------------------------------------


def test_a_device_is_registered_refreshed_listed_and_removed(stack, customer) -> None:  # type: ignore[no-untyped-def]
    first = _device(customer, "tok-first-token")
    refreshed = customer.http.post(customer.url("/api/v1/devices"), timeout=10, json={
        "platform": "android", "push_token": "tok-second-token", "app_version": "3.2.2",
        "replaces_token": "tok-first-token"}).json()
    listed = customer.http.get(customer.url("/api/v1/devices"), timeout=10).json()["items"]

    assert refreshed["id"] == first["id"] and refreshed["token_hint"].endswith("-token")
    assert [d["id"] for d in listed] == [first["id"]] and listed[0]["app_version"] == "3.2.2"
    assert customer.http.delete(customer.url(f"/api/v1/devices/{first['id']}"), timeout=10).status_code == 204
    assert customer.http.get(customer.url("/api/v1/devices"), timeout=10).json()["items"] == []


def test_a_push_token_the_provider_reports_unregistered_removes_its_device(stack, customer) -> None:  # type: ignore[no-untyped-def]
    # Given a live device and one whose app was uninstalled (the FCM sandbox answers NotRegistered to "bad-").
    live = _device(customer, f"tok-live-{uuid.uuid4().hex}")
    _device(customer, f"bad-{uuid.uuid4().hex}")

    # When an order sends a push to both.
    sku = _product(stack)
    resp = customer.submit({"store_id": STORE, "items": [{"sku": sku, "qty": 1}], "payment_method": "cod"})
    assert resp.status_code == 202, resp.text

    # Then the dead token's device is gone and the live one stays.
    def devices_left() -> list[str] | None:
        ids = [d["id"] for d in customer.http.get(customer.url("/api/v1/devices"), timeout=10).json()["items"]]
        return ids if len(ids) == 1 else None

    assert _eventually(devices_left, what="the dead device removed") == [live["id"]]


# --- carts -------------------------------------------------------------------------------------


def test_cart_pricing_reflects_a_price_change_and_checkout_places_one_order(stack, customer) -> None:  # type: ignore[no-untyped-def]
    sku, other = _product(stack, price=5000), _product(stack, price=2000, stock=1)
    assert customer.http.put(customer.url(f"/api/v1/carts/{STORE}/items/{sku}"), json={"qty": 2},
                             timeout=10).status_code == 200
    customer.http.put(customer.url(f"/api/v1/carts/{STORE}/items/{other}"), json={"qty": 1}, timeout=10)
    customer.http.delete(customer.url(f"/api/v1/carts/{STORE}/items/{other}"), timeout=10)

    # The catalog changes under the cart (directly: catalog write routes are another issue's).
    stack.db[collections.PRODUCTS].update_one({"_id": f"{STORE}:{sku}"}, {"$set": {"price_paise": 5500}})
    cart = _cart(customer)

    line = next(line for line in cart["lines"] if line["sku"] == sku)
    assert [line["sku"] for line in cart["lines"]] == [sku]
    assert (line["price_paise_at_add"], line["unit_price_paise"], line["changes"]) == (5000, 5500, ["price_up"])
    assert cart["total_paise"] == 11_000 and cart["changed"] is True

    # Checking out the same version twice places one order, at the catalog's new price.
    body = {"payment_method": "cod", "version": cart["version"]}
    first = customer.http.post(customer.url(f"/api/v1/carts/{STORE}/checkout"), json=body, timeout=10)
    again = customer.http.post(customer.url(f"/api/v1/carts/{STORE}/checkout"), json=body, timeout=10)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    order = customer.wait_terminal(first.json()["id"])
    assert order["status"] == "confirmed" and order["total_paise"] == 11_000
    assert _cart(customer)["lines"] == []


# --- offline sync ------------------------------------------------------------------------------


def test_a_batch_replayed_three_times_applies_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    device = _device(customer)
    sku = _product(stack, stock=50)
    ops = [_op("cart-1", "cart.set", 1, store_id=STORE, sku=sku, qty=2),
           _op("order-1", "order.submit", 2, store_id=STORE, items=[{"sku": sku, "qty": 3}], payment_method="cod")]
    batch_id = f"b-{uuid.uuid4().hex}"

    # The same batch three times (a lost answer), and its operations again under new batch ids.
    answers = [_send(customer, device["id"], ops, batch_id=batch_id) for _ in range(3)]
    answers += [_send(customer, device["id"], ops) for _ in range(2)]

    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert {a.json()["id"] for a in answers[:3]} == {batch_id}
    assert answers[0].headers["Location"].endswith(f"/api/v1/sync/{batch_id}")
    shown = _applied(customer, batch_id)
    for later in answers[3:]:
        _applied(customer, later.json()["id"])
    results = {r["op_id"]: r for r in shown["results"]}
    assert results["cart-1"]["status"] == results["order-1"]["status"] == "applied"
    order_id = results["order-1"]["result"]["order_id"]
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer.user_id}) == 1
    assert customer.wait_terminal(order_id)["status"] == "confirmed"
    assert stack.db[collections.PRODUCTS].find_one({"_id": f"{STORE}:{sku}"})["stock"] == 47  # taken once
    assert _cart(customer)["lines"][0]["qty"] == 2


def test_operations_out_of_client_order_are_applied_in_client_order(stack, customer) -> None:  # type: ignore[no-untyped-def]
    device = _device(customer)
    sku = _product(stack)
    # Queued on the phone as a, b, c, d (seq 1..4); they reach the server as d, b, a, c.
    resp = _send(customer, device["id"], [_op("d", "cart.set", 4, store_id=STORE, sku=sku, qty=7),
                                          _op("b", "cart.set", 2, store_id=STORE, sku=sku, qty=3),
                                          _op("a", "cart.set", 1, store_id=STORE, sku=sku, qty=1),
                                          _op("c", "cart.remove", 3, store_id=STORE, sku=sku)])
    shown = _applied(customer, resp.json()["id"])

    # Each change bumped the cart's version: the versions tell the order they were applied in.
    versions = {r["op_id"]: r["result"]["cart_version"] for r in shown["results"]}
    assert sorted(versions, key=versions.__getitem__) == ["a", "b", "c", "d"]
    assert [r["op_id"] for r in shown["results"]] == ["d", "b", "a", "c"]  # results in the batch's order
    assert _cart(customer)["lines"][0]["qty"] == 7  # d last, not the remove


def test_a_conflict_is_reported_not_swallowed(stack, customer) -> None:  # type: ignore[no-untyped-def]
    device = _device(customer)
    pricey, scarce = _product(stack, price=4000), _product(stack, stock=1)
    resp = _send(customer, device["id"], [
        # The app saw 35.00; the store has since raised it to 40.00.
        _op("p", "cart.set", 1, store_id=STORE, sku=pricey, qty=1, price_paise=3500),
        _op("s", "order.submit", 2, store_id=STORE, items=[{"sku": scarce, "qty": 5}], payment_method="cod"),
        _op("x", "location", 3, order_id="ord_x", lat=12.9, lng=77.6),
    ])
    shown = _applied(customer, resp.json()["id"])

    results = {r["op_id"]: r for r in shown["results"]}
    assert results["p"]["status"] == "conflict" and results["p"]["reason"] == "price_changed"
    assert results["p"]["result"]["price_paise"] == 4000
    assert results["s"]["status"] == "conflict" and results["s"]["reason"] == "out_of_stock"
    assert results["s"]["result"] == {"sku": scarce, "wanted": 5, "available": 1}
    assert results["x"]["status"] == "rejected"
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer.user_id}) == 0


def test_a_batch_that_arrives_while_the_broker_is_down_is_applied_after_it_returns(stack, customer) -> None:  # type: ignore[no-untyped-def]
    device = _device(customer)
    sku = _product(stack)
    # Given an API whose broker is gone (the outbox relay and the workers still reach the real one).
    dead = servers.free_port()
    with api_server(stack.run_dir, stack.cfg, "api-sync-noredis", REDIS_URL=f"redis://127.0.0.1:{dead}/0",
                    REDIS_TIMEOUT_S="0.5") as api:
        resp = _send(customer, device["id"], [_op("o", "cart.set", 1, store_id=STORE, sku=sku, qty=4)],
                     base=f"http://127.0.0.1:{api.port}")

    # Then the batch is accepted, parked in the outbox, and applied once the broker is reachable.
    assert resp.status_code == 202, resp.text
    batch_id = resp.json()["id"]
    entries = [e for e in stack.db[outbox.OUTBOX].find({"task": "sync.apply"}) if e["args"] == [batch_id]]
    assert len(entries) == 1
    assert {r["op_id"]: r["status"] for r in _applied(customer, batch_id)["results"]} == {"o": "applied"}
    assert _cart(customer)["lines"][0]["qty"] == 4


def test_the_sweep_applies_a_batch_whose_message_was_lost(stack, customer) -> None:  # type: ignore[no-untyped-def]
    # Given a batch stored long ago whose sync.apply never reached the broker (nor the outbox).
    device = _device(customer)
    sku = _product(stack)
    batch, _ = sync.store_batch(stack.db, user_id=customer.user_id, role="customer", device_id=device["id"],
                                ops=[_op("lost", "cart.set", 1, store_id=STORE, sku=sku, qty=6)])
    stack.db[sync.BATCHES].update_one({"_id": batch["_id"]}, {"$inc": {"received_at_ms": -120_000}})
    metrics = requests.get(stack.url("/metrics"), timeout=10).text
    lag = next(line for line in metrics.splitlines() if line.startswith("kirana_sync_oldest_pending_seconds "))
    assert float(lag.split()[1]) >= 119  # ops see the stuck batch

    # When beat's sweep runs.
    app.send_task("sync.sweep")

    # Then the batch is applied.
    assert _applied(customer, batch["_id"])["results"][0]["status"] == "applied"
    assert _cart(customer)["lines"][0]["qty"] == 6


def test_sync_results_reach_the_app_over_its_websocket(stack, customer) -> None:  # type: ignore[no-untyped-def]
    device = _device(customer)
    sku = _product(stack)
    url = f"{stack.ws_url}/ws/sync?access_token={customer.tokens['access_token']}"
    with connect(url, proxy=None, open_timeout=10, close_timeout=2) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "ready"}
        batch_id = _send(customer, device["id"], [_op("w", "cart.set", 1, store_id=STORE, sku=sku, qty=1)]).json()["id"]
        message = json.loads(ws.recv(timeout=20))

    assert message["type"] == "sync" and message["batch_id"] == batch_id and message["status"] == "applied"
    assert message["results"] == [{"op_id": "w", "kind": "cart.set", "status": "applied",
                                   "result": {"cart_version": 1}}]


def test_a_rider_syncs_location_points_taken_offline(stack) -> None:  # type: ignore[no-untyped-def]
    rider, customer, staff = stack.user(Role.RIDER), stack.customer(), stack.user(Role.STORE_STAFF, store_id=STORE)
    order_id = customer.submit({"store_id": STORE, "items": [{"sku": _product(stack), "qty": 1}],
                                "payment_method": "cod"}).json()["id"]
    assert customer.wait_terminal(order_id)["status"] == "confirmed"
    assert staff.http.post(staff.url(f"/api/v1/deliveries/{order_id}/assign"), json={"rider_id": rider.user_id},
                           timeout=10).status_code < 300
    assert rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/pickup"), timeout=10).status_code < 300
    device = _device(rider)

    # Points a second apart, taken a minute ago by a phone whose clock is ten minutes fast.
    fast = now_ms() + 600_000
    resp = _send(rider, device["id"], [_op(f"p{i}", "location", i, at_ms=fast - 60_000 + i * 1000, order_id=order_id,
                                           lat=12.97 + i / 1000, lng=77.59) for i in range(1, 4)], sent_at_ms=fast)
    shown = _applied(rider, resp.json()["id"])

    assert [r["status"] for r in shown["results"]] == ["applied"] * 3
    trail = sorted(stack.db["delivery_locations"].find({"order_id": order_id}), key=lambda p: p["at_ms"])
    assert [round(p["lat"], 3) for p in trail] == [12.971, 12.972, 12.973]
    # Stored on the server's clock: about a minute before the batch arrived, not ten minutes ahead.
    assert trail[-1]["at_ms"] <= now_ms() - 50_000


# --- store analytics ---------------------------------------------------------------------------


def test_analytics_totals_equal_a_recomputation_from_the_orders_after_a_load(stack) -> None:  # type: ignore[no-untyped-def]
    # Given a store of this test's own, its owner, and a few hundred orders from a dozen customers.
    store = f"store-t-{uuid.uuid4().hex[:8]}"
    stack.db[collections.STORES].insert_one({"_id": store, "name": "Analytics test store", "city": "Pune"})
    skus = [_product(stack, store=store, price=1000 * (i + 1), stock=10_000, category=f"cat-{i % 3}")
            for i in range(5)]
    scarce = _product(stack, store=store, price=999, stock=20, category="cat-scarce")
    owner = stack.user(Role.STORE_OWNER, store_id=store)
    customers = [stack.customer() for _ in range(12)]

    def place(i: int) -> str:
        items = [{"sku": skus[i % 5], "qty": 1 + i % 3}] + ([{"sku": scarce, "qty": 2}] if i % 4 == 0 else [])
        resp = customers[i % 12].submit({"store_id": store, "items": items,
                                         "payment_method": ["cod", "cod", "upi"][i % 3]})
        assert resp.status_code == 202, resp.text
        return resp.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        placed = list(pool.map(place, range(200)))
    _eventually(lambda: stack.db[collections.ORDERS].count_documents(
        {"store_id": store, "status": {"$in": ["accepted", "processing"]}}) == 0, timeout=60, what="orders processed")

    # When the read model has caught up, it equals a recomputation straight from the orders.
    def recomputed() -> dict[str, Any]:
        found = list(stack.db[collections.ORDERS].find({"store_id": store}))
        sold = [o for o in found if o["status"] in analytics.SOLD]
        per_customer = Counter(o["customer_id"] for o in sold)
        return {"orders": len(found), "sold_orders": len(sold), "sales_paise": sum(o["total_paise"] for o in sold),
                "orders_by_status": dict(sorted(Counter(o["status"] for o in found).items())),
                "repeat_customer_rate": round(sum(1 for n in per_customer.values() if n > 1) / len(per_customer), 4),
                "payment_methods": dict(Counter(o["payment_method"] for o in sold)),
                "products": _line_sums(sold)}

    def served() -> dict[str, Any]:
        resp = owner.http.get(owner.url(f"/api/v1/stores/{store}/analytics"), params={"top": 100}, timeout=10)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return {"orders": body["orders"], "sold_orders": body["sold_orders"], "sales_paise": body["sales_paise"],
                "orders_by_status": body["orders_by_status"], "repeat_customer_rate": body["repeat_customer_rate"],
                "payment_methods": {m: v["orders"] for m, v in body["payment_methods"].items()},
                "products": {p["sku"]: p["sales_paise"] for p in body["top_products"]}}

    _eventually(lambda: served() == recomputed(), timeout=30, what="analytics equal to the orders")
    assert served()["orders"] == len(placed) == 200
    assert 0 < served()["sold_orders"] < 200  # unpaid UPI orders and a product that ran out are not sales

    # And another store's staff cannot read it.
    other = stack.user(Role.STORE_STAFF, store_id=STORE)
    assert other.http.get(other.url(f"/api/v1/stores/{store}/analytics"), timeout=10).status_code == 404


def _line_sums(sold: list[dict[str, Any]]) -> dict[str, int]:
    sums: Counter[str] = Counter()
    for order in sold:
        for line in order["lines"]:
            sums[line["sku"]] += line["line_total_paise"]
    return dict(sums)
