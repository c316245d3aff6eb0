"""An order's life through HTTP and the real orders pool."""

from __future__ import annotations

import time
import uuid

import pytest

from kirana import db as collections
from kirana.permissions import Role
from kirana.seed import STORES
from tests.harness import eventually

pytestmark = pytest.mark.e2e

STORE = STORES[0]["_id"]


def _in_stock(stack, n: int = 2, minimum: int = 20) -> list[dict]:  # type: ignore[no-untyped-def]
    found = stack.db[collections.PRODUCTS].find({"store_id": STORE, "stock": {"$gte": minimum}}).sort("_id", 1).limit(n)
    return list(found)


def _body(products: list[dict], qty: int = 1) -> dict:
    return {
        "store_id": STORE,
        "items": [{"sku": p["sku"], "qty": qty} for p in products],
        "payment_method": "cod",
    }


def test_a_cod_order_is_accepted_then_confirmed_with_catalog_prices(stack, customer) -> None:  # type: ignore[no-untyped-def]
    products = _in_stock(stack)
    before = {p["_id"]: p["stock"] for p in products}

    started = time.monotonic()
    resp = customer.submit(_body(products, qty=2))

    assert resp.status_code == 202
    accepted = resp.json()
    assert accepted["status"] == "accepted"
    assert resp.headers["Location"] == f"/api/v1/orders/{accepted['id']}"
    order = customer.wait_terminal(accepted["id"], timeout=10)
    elapsed = time.monotonic() - started
    assert order["status"] == "confirmed"
    assert elapsed < 5, f"confirmation took {elapsed:.2f}s"
    assert [e["status"] for e in order["events"]] == ["accepted", "processing", "confirmed"]
    assert all(isinstance(e["at_ms"], int) for e in order["events"])
    assert [line["sku"] for line in order["lines"]] == [p["sku"] for p in products]
    for line, product in zip(order["lines"], products, strict=True):
        assert line["unit_price_paise"] == product["price_paise"]
        assert line["line_total_paise"] == 2 * product["price_paise"]
    assert order["total_paise"] == sum(2 * p["price_paise"] for p in products)
    after = {p["_id"]: p for p in stack.db[collections.PRODUCTS].find({"_id": {"$in": list(before)}})}
    for pid, stock in before.items():
        assert after[pid]["stock"] == stock - 2

    def settled() -> bool:
        # The hold becomes a sale right after the confirming write (the same run's next step).
        found = stack.db[collections.PRODUCTS].find({"_id": {"$in": list(before)}}, {"holds": 1})
        return all(accepted["id"] not in p.get("holds", {}) for p in found)

    eventually(settled, timeout=5, what="the order's holds settled")


def test_an_unknown_sku_is_rejected_with_a_reason_and_nothing_stays_reserved(stack, customer) -> None:  # type: ignore[no-untyped-def]
    [product] = _in_stock(stack, 1)
    body = _body([product])
    body["items"].append({"sku": "NO-SUCH-SKU", "qty": 1})

    order = customer.wait_terminal(customer.submit(body).json()["id"])

    assert order["status"] == "rejected"
    assert order["reject_reason"] == "unknown_sku"
    assert order["reject_detail"] == {"sku": "NO-SUCH-SKU"}
    assert stack.db[collections.PRODUCTS].find_one({"_id": product["_id"]})["stock"] == product["stock"]


def test_more_than_the_shelf_holds_is_rejected_out_of_stock(stack, customer) -> None:  # type: ignore[no-untyped-def]
    [product] = _in_stock(stack, 1)
    body = _body([product], qty=product["stock"] + 1)

    order = customer.wait_terminal(customer.submit(body).json()["id"])

    assert order["status"] == "rejected"
    assert order["reject_reason"] == "out_of_stock"
    assert order["reject_detail"]["available"] == product["stock"]


def test_an_unknown_store_is_rejected(stack, customer) -> None:  # type: ignore[no-untyped-def]
    body = _body(_in_stock(stack, 1))
    body["store_id"] = "store-nowhere"

    order = customer.wait_terminal(customer.submit(body).json()["id"])

    assert (order["status"], order["reject_reason"]) == ("rejected", "unknown_store")


def test_the_same_idempotency_key_and_body_give_back_the_same_order(stack, customer) -> None:  # type: ignore[no-untyped-def]
    body = _body(_in_stock(stack, 1))
    key = uuid.uuid4().hex

    first = customer.submit(body, key=key)
    second = customer.submit(body, key=key)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer.user_id}) == 1
    order = customer.wait_terminal(first.json()["id"])
    assert [e["status"] for e in order["events"]] == ["accepted", "processing", "confirmed"]


def test_the_same_idempotency_key_with_another_body_is_refused(stack, customer) -> None:  # type: ignore[no-untyped-def]
    products = _in_stock(stack, 2)
    key = uuid.uuid4().hex
    body = _body(products[:1])
    first = customer.submit(body, key=key)
    other = dict(body, items=[{"sku": products[1]["sku"], "qty": 1}])

    resp = customer.submit(other, key=key)

    assert resp.status_code == 409
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["order_id"] == first.json()["id"]
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer.user_id}) == 1


def test_an_unknown_order_is_404_in_the_problem_format(stack, customer) -> None:  # type: ignore[no-untyped-def]
    resp = customer.http.get(customer.url("/api/v1/orders/ord_nope"))

    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["status"] == 404


def test_products_are_listed_by_page_and_category_with_stock(stack, customer) -> None:  # type: ignore[no-untyped-def]
    page = customer.http.get(customer.url("/api/v1/products"), params={"limit": 5, "offset": 0}).json()
    nxt = customer.http.get(customer.url("/api/v1/products"), params={"limit": 5, "offset": 5}).json()
    dairy = customer.http.get(customer.url("/api/v1/products"), params={"category": "Dairy", "limit": 200}).json()

    assert len(page["items"]) == 5 and page["total"] >= 1000
    assert not {p["id"] for p in page["items"]} & {p["id"] for p in nxt["items"]}
    assert dairy["items"] and all(p["category"] == "Dairy" for p in dairy["items"])
    assert dairy["total"] == stack.db[collections.PRODUCTS].count_documents({"category": "Dairy"})
    assert all(isinstance(p["stock"], int) and "holds" not in p for p in page["items"])


def test_health_and_readiness(stack, customer) -> None:  # type: ignore[no-untyped-def]
    assert customer.http.get(customer.url("/healthz")).json() == {"status": "ok"}
    ready = customer.http.get(customer.url("/readyz"))
    detailed = stack.user(Role.OPS).http.get(customer.url("/readyz"))
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "checks": {}}
    assert detailed.status_code == 200
    assert set(detailed.json()["checks"]["pools"]) == set(stack.workers)
