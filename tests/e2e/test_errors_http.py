"""Bad input gets a 4xx problem document that says what is wrong, and stores nothing."""

from __future__ import annotations

import json
import uuid

import pytest

from kirana import db as collections

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def _valid(customer: str) -> dict:
    return {"customer_id": customer, "store_id": "store-blr-indiranagar", "payment_method": "cod",
            "items": [{"sku": "AASHIRVAAD-ATTA-5KG", "qty": 1}]}


def _with(customer: str, **changes: object) -> dict:
    body = _valid(customer)
    for key, value in changes.items():
        if value is KeyError:
            body.pop(key)
        else:
            body[key] = value
    return body


CASES = [
    # (name, body-maker, expected status, a field that must be named or None)
    ("wrong type of qty", lambda c: _with(c, items=[{"sku": "A", "qty": "2"}]), 422, "items.0.qty"),
    ("qty is a bool", lambda c: _with(c, items=[{"sku": "A", "qty": True}]), 422, "items.0.qty"),
    ("qty is a float", lambda c: _with(c, items=[{"sku": "A", "qty": 1.5}]), 422, "items.0.qty"),
    ("zero qty", lambda c: _with(c, items=[{"sku": "A", "qty": 0}]), 422, "items.0.qty"),
    ("negative qty", lambda c: _with(c, items=[{"sku": "A", "qty": -3}]), 422, "items.0.qty"),
    ("absurd qty", lambda c: _with(c, items=[{"sku": "A", "qty": 10**9}]), 422, "items.0.qty"),
    ("customer is a number", lambda c: _with(c, customer_id=5), 422, "customer_id"),
    ("unknown field", lambda c: _with(c, coupon="FREE"), 422, "coupon"),
    ("unknown item field", lambda c: _with(c, items=[{"sku": "A", "qty": 1, "price_paise": 1}]), 422,
     "items.0.price_paise"),
    ("missing store", lambda c: _with(c, store_id=KeyError), 422, "store_id"),
    ("missing items", lambda c: _with(c, items=KeyError), 422, "items"),
    ("empty items", lambda c: _with(c, items=[]), 422, "items"),
    ("too many items", lambda c: _with(c, items=[{"sku": f"S{i}", "qty": 1} for i in range(101)]), 422, "items"),
    ("same sku twice", lambda c: _with(c, items=[{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]), 422, "items"),
    ("unsupported payment", lambda c: _with(c, payment_method="barter"), 422, "payment_method"),
    ("blank sku", lambda c: _with(c, items=[{"sku": "", "qty": 1}]), 422, "items.0.sku"),
    ("body is a list", lambda c: [_valid(c)], 422, None),
]


@pytest.mark.parametrize(("name", "make", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_invalid_orders_are_refused_with_the_field_named(stack, name, make, status, field) -> None:  # type: ignore[no-untyped-def]
    customer = f"bad-{uuid.uuid4().hex[:8]}"

    resp = stack.http.post(stack.url("/api/v1/orders"), json=make(customer), timeout=10)

    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == PROBLEM
    problem = resp.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == status
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer}) == 0


def _raw(stack, data: bytes, content_type: str | None, **headers: str):  # type: ignore[no-untyped-def]
    if content_type:
        headers["Content-Type"] = content_type
    return stack.http.post(stack.url("/api/v1/orders"), data=data, headers=headers, timeout=10)


def test_malformed_json_is_400_with_where_it_broke(stack) -> None:  # type: ignore[no-untyped-def]
    resp = _raw(stack, b'{"customer_id": "x", "items": [', "application/json")
    assert resp.status_code == 400 and resp.headers["Content-Type"] == PROBLEM
    assert "line 1" in resp.json()["detail"]


def test_a_body_that_is_not_utf8_is_400(stack) -> None:  # type: ignore[no-untyped-def]
    assert _raw(stack, b'{"a": "\xff"}', "application/json").status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_is_415(stack, content_type) -> None:  # type: ignore[no-untyped-def]
    resp = _raw(stack, json.dumps(_valid("ct")).encode(), content_type)
    assert resp.status_code == 415 and resp.headers["Content-Type"] == PROBLEM


def test_an_oversized_body_is_413(stack) -> None:  # type: ignore[no-untyped-def]
    customer = f"big-{uuid.uuid4().hex[:8]}"
    body = _valid(customer) | {"padding": "x" * (stack.cfg.max_body_bytes + 1)}
    resp = _raw(stack, json.dumps(body).encode(), "application/json")
    assert resp.status_code == 413 and resp.headers["Content-Type"] == PROBLEM
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer}) == 0


def test_an_overlong_idempotency_key_is_400(stack) -> None:  # type: ignore[no-untyped-def]
    resp = stack.submit(_valid("key"), key="k" * 256)
    assert resp.status_code == 400 and resp.json()["type"] == "/problems/invalid-idempotency-key"


@pytest.mark.parametrize("query", [{"limit": "abc"}, {"limit": 0}, {"limit": 201}, {"offset": -1}])
def test_bad_paging_of_products_is_400(stack, query) -> None:  # type: ignore[no-untyped-def]
    resp = stack.http.get(stack.url("/api/v1/products"), params=query, timeout=10)
    assert resp.status_code == 400 and resp.headers["Content-Type"] == PROBLEM


def test_unknown_routes_and_methods_answer_in_the_same_format(stack) -> None:  # type: ignore[no-untyped-def]
    missing = stack.http.get(stack.url("/api/v1/nothing"), timeout=10)
    wrong = stack.http.delete(stack.url("/api/v1/orders"), timeout=10)
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert missing.headers["Content-Type"] == wrong.headers["Content-Type"] == PROBLEM
    assert "POST" in wrong.headers["Allow"]
