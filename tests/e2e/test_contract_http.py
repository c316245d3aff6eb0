"""What the live routes answer on their happy paths matches the OpenAPI document.

The fuzzer mostly meets 4xx answers (random ids, random bodies); these are the
2xx ones: a real customer, store, rider, ops and admin going through orders,
payments, deliveries, notifications, two-factor, operations, the catalog's
writes, search, loyalty, backups, devices, carts, offline sync and analytics. Every answer is
checked against the document (status documented, content type, body schema),
whose response models forbid undocumented fields.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pyotp
import pytest
import requests
import schemathesis

from api import create_app
from api.contract import openapi
from kirana import db as collections
from kirana.permissions import Role
from kirana.seed import STORES
from tests.harness import PASSWORD, Client

pytestmark = pytest.mark.e2e

SPEC = openapi(create_app())
SCHEMA = schemathesis.openapi.from_dict(SPEC)
STORE = STORES[0]["_id"]


def conforms(resp: requests.Response, method: str, path: str, status: int) -> requests.Response:
    """`resp` has `status`, documented for `method path`, with the documented content type and schema."""
    assert resp.status_code == status, (method, path, resp.status_code, resp.text[:500])
    documented = SPEC["paths"][path][method.lower()]["responses"][str(status)]
    media = next(iter(documented.get("content", {None: None})))
    if media is None:
        assert not resp.content
    else:
        assert resp.headers["Content-Type"].split(";")[0] == media.split(";")[0]
    SCHEMA[path][method].validate_response(resp)
    return resp


def _wait(client: Client, order_id: str, status: str, timeout: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (order := client.order(order_id))["status"] != status:
        assert time.monotonic() < deadline, f"{order_id} is {order['status']}, not {status}"
        time.sleep(0.05)
    return order


def _product(stack) -> dict:  # type: ignore[no-untyped-def]
    return stack.db[collections.PRODUCTS].find_one({"store_id": STORE, "stock": {"$gte": 10}})


def _submit(stack, customer: Client, method: str, key: str | None = None,  # type: ignore[no-untyped-def]
            sku: str | None = None) -> requests.Response:
    body = {"store_id": STORE, "payment_method": method, "items": [{"sku": sku or _product(stack)["sku"], "qty": 1}]}
    return customer.submit(body, key=key or uuid.uuid4().hex)


def test_the_stack_serves_the_codes_document(stack) -> None:  # type: ignore[no-untyped-def]
    conforms(requests.get(stack.url("/api/v1/openapi.json"), timeout=10), "GET", "/api/v1/openapi.json", 200)
    assert requests.get(stack.url("/api/v1/openapi.json"), timeout=10).json() == SPEC
    conforms(requests.get(stack.url("/api/v1/docs"), timeout=10), "GET", "/api/v1/docs", 200)


def test_accounts_and_two_factor(stack) -> None:  # type: ignore[no-untyped-def]
    email = f"contract-{uuid.uuid4().hex[:8]}@example.in"
    conforms(requests.post(stack.url("/api/v1/auth/register"), json={"email": email, "password": PASSWORD,
                                                                     "phone": "+919812345678"}, timeout=10),
             "POST", "/api/v1/auth/register", 202)
    login = conforms(requests.post(stack.url("/api/v1/auth/login"), json={"email": email, "password": PASSWORD},
                                   timeout=10), "POST", "/api/v1/auth/login", 200).json()
    client = Client(stack.base_url, login["user"]["id"], email, login)
    conforms(client.http.get(client.url("/api/v1/auth/me")), "GET", "/api/v1/auth/me", 200)
    conforms(requests.post(stack.url("/api/v1/auth/refresh"), json={"refresh_token": login["refresh_token"]},
                           timeout=10), "POST", "/api/v1/auth/refresh", 200)

    enrol = conforms(client.http.post(client.url("/api/v1/auth/2fa/enroll")), "POST", "/api/v1/auth/2fa/enroll",
                     200).json()
    totp = pyotp.TOTP(enrol["secret"])
    conforms(client.http.post(client.url("/api/v1/auth/2fa/confirm"), json={"code": totp.at(time.time() - 30)}),
             "POST", "/api/v1/auth/2fa/confirm", 200)
    conforms(requests.post(stack.url("/api/v1/auth/2fa/sms"), json={"email": email, "password": PASSWORD},
                           timeout=10), "POST", "/api/v1/auth/2fa/sms", 202)
    conforms(client.http.delete(client.url("/api/v1/auth/2fa"), json={"password": PASSWORD, "code": totp.now()}),
             "DELETE", "/api/v1/auth/2fa", 204)
    conforms(client.http.post(client.url("/api/v1/auth/password"),
                              json={"current_password": PASSWORD, "new_password": "another long passphrase"}),
             "POST", "/api/v1/auth/password", 204)
    again = requests.post(stack.url("/api/v1/auth/login"), json={"email": email,
                                                                 "password": "another long passphrase"}, timeout=10)
    fresh = Client(stack.base_url, client.user_id, email, again.json())
    conforms(fresh.http.post(fresh.url("/api/v1/auth/logout")), "POST", "/api/v1/auth/logout", 204)


def test_orders_payments_and_deliveries(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.reset()
    conforms(customer.http.get(customer.url("/api/v1/products"), params={"store_id": STORE, "limit": 5}),
             "GET", "/api/v1/products", 200)
    key, sku = uuid.uuid4().hex, _product(stack)["sku"]
    # The same body twice: one product picked once (the first order may drop it below the stock filter)
    cod = conforms(_submit(stack, customer, "cod", key, sku), "POST", "/api/v1/orders", 202).json()
    conforms(_submit(stack, customer, "cod", key, sku), "POST", "/api/v1/orders", 202)
    _wait(customer, cod["id"], "confirmed")
    conforms(customer.http.get(customer.url(f"/api/v1/orders/{cod['id']}")), "GET", "/api/v1/orders/{order_id}", 200)

    card = _submit(stack, customer, "card").json()
    checkout = _wait(customer, card["id"], "awaiting_payment")["payment"]
    conforms(customer.http.get(customer.url(f"/api/v1/orders/{card['id']}")), "GET", "/api/v1/orders/{order_id}",
             200)
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    conforms(customer.http.post(customer.url("/api/v1/payments/verify"), json=paid), "POST",
             "/api/v1/payments/verify", 202)
    _wait(customer, card["id"], "confirmed")
    conforms(customer.http.post(customer.url(f"/api/v1/orders/{card['id']}/cancel")), "POST",
             "/api/v1/orders/{order_id}/cancel", 202)

    failing = _submit(stack, customer, "upi").json()
    checkout = _wait(customer, failing["id"], "awaiting_payment")["payment"]
    stack.sandbox.checkout(checkout["razorpay_order_id"], "upi", flow="intent", vpa="x@okicici", outcome="failure")
    _wait(customer, failing["id"], "payment_failed")
    conforms(customer.http.get(customer.url(f"/api/v1/orders/{failing['id']}")), "GET",
             "/api/v1/orders/{order_id}", 200)
    conforms(customer.http.post(customer.url(f"/api/v1/orders/{failing['id']}/retry-payment")), "POST",
             "/api/v1/orders/{order_id}/retry-payment", 202)
    conforms(customer.http.get(customer.url("/api/v1/payment-methods")), "GET", "/api/v1/payment-methods", 200)

    staff, rider = stack.user(Role.STORE_STAFF, store_id=STORE), stack.user(Role.RIDER)
    conforms(staff.http.post(staff.url(f"/api/v1/deliveries/{cod['id']}/assign"), json={"rider_id": rider.user_id}),
             "POST", "/api/v1/deliveries/{order_id}/assign", 200)
    conforms(rider.http.post(rider.url(f"/api/v1/deliveries/{cod['id']}/pickup")), "POST",
             "/api/v1/deliveries/{order_id}/pickup", 200)
    conforms(rider.http.post(rider.url(f"/api/v1/deliveries/{cod['id']}/location"), json={"lat": 12.9, "lng": 77.6}),
             "POST", "/api/v1/deliveries/{order_id}/location", 202)
    conforms(rider.http.post(rider.url(f"/api/v1/deliveries/{cod['id']}/delivered")), "POST",
             "/api/v1/deliveries/{order_id}/delivered", 200)
    conforms(customer.http.get(customer.url(f"/api/v1/orders/{cod['id']}")), "GET", "/api/v1/orders/{order_id}", 200)


def test_notifications(stack, customer) -> None:  # type: ignore[no-untyped-def]
    _submit(stack, customer, "cod")
    conforms(customer.http.put(customer.url("/api/v1/notifications/preferences"),
                               json={"language": "hi", "quiet_start": "22:00", "quiet_end": "07:00"}),
             "PUT", "/api/v1/notifications/preferences", 200)
    conforms(customer.http.get(customer.url("/api/v1/notifications/preferences")), "GET",
             "/api/v1/notifications/preferences", 200)
    deadline = time.monotonic() + 20
    while not (items := customer.http.get(customer.url("/api/v1/notifications")).json()["items"]):
        assert time.monotonic() < deadline, "no notification reached the inbox"
        time.sleep(0.1)
    conforms(customer.http.get(customer.url("/api/v1/notifications")), "GET", "/api/v1/notifications", 200)
    conforms(customer.http.post(customer.url(f"/api/v1/notifications/{items[0]['id']}/read")), "POST",
             "/api/v1/notifications/{notification_id}/read", 204)


def test_operations_webhooks_and_admin(stack, customer) -> None:  # type: ignore[no-untyped-def]
    ops, admin = stack.user(Role.OPS), stack.user(Role.ADMIN)
    conforms(ops.http.get(ops.url("/api/v1/audit"), params={"limit": 5}), "GET", "/api/v1/audit", 200)
    conforms(ops.http.get(ops.url("/api/v1/dead-letters")), "GET", "/api/v1/dead-letters", 200)
    conforms(requests.get(stack.url("/healthz"), timeout=10), "GET", "/healthz", 200)
    conforms(requests.get(stack.url("/readyz"), timeout=10), "GET", "/readyz", 200)
    conforms(requests.get(stack.url("/metrics"), timeout=10), "GET", "/metrics", 200)
    conforms(admin.http.put(admin.url(f"/api/v1/users/{customer.user_id}/role"), json={"role": "rider"}),
             "PUT", "/api/v1/users/{user_id}/role", 200)

    # A body of its own: the same body under another event id is a duplicate (what it says is the key).
    body = json.dumps({"entity": "event", "event": "account.updated", "payload": {},
                       "created_at": uuid.uuid4().int % 10**9}).encode()
    signature = hmac.new(stack.cfg.razorpay_webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    conforms(requests.post(stack.url("/webhooks/razorpay"), data=body, timeout=10, headers={
        "Content-Type": "application/json", "X-Razorpay-Signature": signature,
        "X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex[:14]}"}), "POST", "/webhooks/razorpay", 200)


def _eventually(probe, what: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)
    return found


def test_catalog_writes(stack) -> None:  # type: ignore[no-untyped-def]
    owner = stack.user(Role.STORE_OWNER, store_id=STORE)
    sku = f"C{uuid.uuid4().hex[:10].upper()}"
    created = conforms(owner.http.post(owner.url("/api/v1/products"), json={
        "sku": sku, "name": "Contract Chai 250 g", "brand": "Kirana", "category": "Tea", "unit": "250 g",
        "price_paise": 12_000, "mrp_paise": 13_000, "stock": 5}), "POST", "/api/v1/products", 201).json()
    one = "/api/v1/products/{product_id}"
    url = owner.url(f"/api/v1/products/{created['id']}")
    conforms(owner.http.get(url), "GET", one, 200)
    conforms(owner.http.patch(url, json={"price_paise": 11_500}), "PATCH", one, 200)
    conforms(owner.http.post(f"{url}/stock", json={"delta": -2}), "POST", one + "/stock", 200)
    conforms(owner.http.delete(url), "DELETE", one, 204)


def test_search_and_synonyms(stack, customer) -> None:  # type: ignore[no-untyped-def]
    ops = stack.user(Role.OPS)
    conforms(ops.http.post(ops.url("/api/v1/search/reindex")), "POST", "/api/v1/search/reindex", 202)

    def built() -> bool:
        status = conforms(ops.http.get(ops.url("/api/v1/search/status")), "GET", "/api/v1/search/status", 200)
        return status.json()["version"] is not None

    _eventually(built, "index built")
    found = conforms(customer.http.get(customer.url("/api/v1/search"), params={
        "q": "atta", "store_id": STORE, "in_stock": "true", "sort": "price_asc", "per_page": 5}),
        "GET", "/api/v1/search", 200).json()
    assert found["items"] and found["facets"]["category"], found
    conforms(customer.http.get(customer.url("/api/v1/search/suggest"), params={"q": "aa", "limit": 5}),
             "GET", "/api/v1/search/suggest", 200)
    group = f"contract-{uuid.uuid4().hex[:6]}"
    one = "/api/v1/search/synonyms/{group}"
    conforms(ops.http.put(ops.url(f"/api/v1/search/synonyms/{group}"), json={"terms": ["Chai", "tea"]}), "PUT",
             one, 200)
    conforms(ops.http.get(ops.url("/api/v1/search/synonyms")), "GET", "/api/v1/search/synonyms", 200)
    conforms(ops.http.delete(ops.url(f"/api/v1/search/synonyms/{group}")), "DELETE", one, 204)


def test_loyalty_backups_and_analytics(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order = _submit(stack, customer, "cod").json()
    _wait(customer, order["id"], "confirmed")
    board = "/api/v1/leaderboards/{scope}/{scope_id}/{period}"
    conforms(customer.http.get(customer.url(f"/api/v1/leaderboards/store/{STORE}/all"), params={"limit": 5}),
             "GET", board, 200)
    # Once the confirmed order's points (and the first-order achievement) are in, the summary has all its parts.
    mine = "/api/v1/customers/me/loyalty"
    _eventually(lambda: (b := conforms(customer.http.get(customer.url(mine)), "GET", mine, 200).json())["achievements"]
                and b["ranks"] and b["balance"] > 0, "points earned")
    conforms(customer.http.get(customer.url(f"/api/v1/leaderboards/store/{STORE}/all")), "GET", board, 200)
    redeemed = customer.submit({"store_id": STORE, "payment_method": "cod", "redeem_points": 1,
                                "items": [{"sku": _product(stack)["sku"], "qty": 1}]}).json()
    order = _wait(customer, redeemed["id"], "confirmed")
    assert order["discount_paise"] > 0, order
    conforms(customer.http.get(customer.url(f"/api/v1/orders/{order['id']}")), "GET", "/api/v1/orders/{order_id}", 200)

    owner = stack.user(Role.STORE_OWNER, store_id=STORE)
    analytics = "/api/v1/stores/{store_id}/analytics"
    conforms(owner.http.get(owner.url(f"/api/v1/stores/{STORE}/analytics")), "GET", analytics, 200)
    conforms(owner.http.get(owner.url(f"/api/v1/stores/{STORE}/analytics"), params={
        "from": "2026-01-01", "to": "2026-01-31", "top": 3}), "GET", analytics, 200)

    ops = stack.user(Role.OPS)
    conforms(ops.http.post(ops.url("/api/v1/backups")), "POST", "/api/v1/backups", 202)
    # The run is listed once the backups worker starts it, and has its sizes once done: each listing is checked.
    _eventually(lambda: [run for run in conforms(ops.http.get(ops.url("/api/v1/backups"), params={"limit": 5}), "GET",
                                                 "/api/v1/backups", 200).json()["items"] if run["status"] != "running"],
                "backup run finished")


def test_devices_carts_and_sync(stack, customer) -> None:  # type: ignore[no-untyped-def]
    device = conforms(customer.http.post(customer.url("/api/v1/devices"), json={
        "platform": "android", "push_token": f"tok-{uuid.uuid4().hex}", "app_version": "3.2.1"}),
        "POST", "/api/v1/devices", 201).json()
    conforms(customer.http.get(customer.url("/api/v1/devices")), "GET", "/api/v1/devices", 200)

    sku, other = (p["sku"] for p in stack.db[collections.PRODUCTS].find({"store_id": STORE, "stock": {"$gte": 10}})
                  .limit(2))
    item, cart = "/api/v1/carts/{store_id}/items/{sku}", "/api/v1/carts/{store_id}"
    conforms(customer.http.put(customer.url(f"/api/v1/carts/{STORE}/items/{sku}"), json={"qty": 2}), "PUT", item, 200)
    conforms(customer.http.put(customer.url(f"/api/v1/carts/{STORE}/items/{other}"), json={"qty": 1}), "PUT", item,
             200)
    conforms(customer.http.delete(customer.url(f"/api/v1/carts/{STORE}/items/{other}")), "DELETE", item, 200)
    shown = conforms(customer.http.get(customer.url(f"/api/v1/carts/{STORE}")), "GET", cart, 200).json()
    conforms(customer.http.post(customer.url(f"/api/v1/carts/{STORE}/checkout"), json={
        "payment_method": "cod", "version": shown["version"]}), "POST", cart + "/checkout", 202)
    conforms(customer.http.get(customer.url(f"/api/v1/carts/{STORE}")), "GET", cart, 200)  # with last_checkout
    customer.http.put(customer.url(f"/api/v1/carts/{STORE}/items/{sku}"), json={"qty": 1})
    conforms(customer.http.delete(customer.url(f"/api/v1/carts/{STORE}")), "DELETE", cart, 200)

    batch = conforms(customer.http.post(customer.url("/api/v1/sync"), json={
        "device_id": device["id"], "sent_at_ms": int(time.time() * 1000),
        "ops": [{"op_id": "a", "kind": "cart.set", "seq": 1, "client_at_ms": int(time.time() * 1000) - 60_000,
                 "data": {"store_id": STORE, "sku": sku, "qty": 1}},
                {"op_id": "b", "kind": "cart.set", "seq": 2, "client_at_ms": int(time.time() * 1000) - 50_000,
                 "data": {"store_id": STORE, "sku": "NO-SUCH-SKU", "qty": 1}}]}),
        "POST", "/api/v1/sync", 202).json()
    one = "/api/v1/sync/{batch_id}"

    def applied() -> bool:
        shown = conforms(customer.http.get(customer.url(f"/api/v1/sync/{batch['id']}")), "GET", one, 200).json()
        return shown["status"] == "applied"

    _eventually(applied, "sync batch applied", timeout=30)
    conforms(customer.http.delete(customer.url(f"/api/v1/devices/{device['id']}")), "DELETE",
             "/api/v1/devices/{device_id}", 204)


def test_an_unknown_empty_or_repeated_query_parameter(stack, customer) -> None:  # type: ignore[no-untyped-def]
    unknown = customer.http.get(customer.url("/api/v1/products"), params={"limt": 5}, timeout=10)
    empty = customer.http.get(customer.url("/api/v1/products"), params={"limit": ""}, timeout=10)
    twice = customer.http.get(customer.url("/api/v1/products"), params={"category": ["Dairy", "Snacks"]}, timeout=10)

    conforms(unknown, "GET", "/api/v1/products", 400)
    assert unknown.json()["type"] == "/problems/invalid-query" and unknown.json()["errors"][0]["field"] == "limt"
    assert conforms(empty, "GET", "/api/v1/products", 200).json()["limit"] == 50, "an empty value counts as absent"
    conforms(twice, "GET", "/api/v1/products", 400)
    assert twice.json()["errors"] == [{"field": "category", "message": "give it once", "type": "repeated"}]
