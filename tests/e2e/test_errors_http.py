"""Bad input gets a 4xx problem document that says what is wrong, and stores nothing."""

from __future__ import annotations

import json

import pytest

from kirana import db as collections

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def _valid() -> dict:
    return {"store_id": "store-blr-indiranagar", "payment_method": "cod",
            "items": [{"sku": "AASHIRVAAD-ATTA-5KG", "qty": 1}]}


def _with(**changes: object) -> dict:
    body = _valid()
    for key, value in changes.items():
        if value is KeyError:
            body.pop(key)
        else:
            body[key] = value
    return body


CASES = [
    # (name, body-maker, expected status, a field that must be named or None)
    ("wrong type of qty", lambda: _with(items=[{"sku": "A", "qty": "2"}]), 422, "items.0.qty"),
    ("qty is a bool", lambda: _with(items=[{"sku": "A", "qty": True}]), 422, "items.0.qty"),
    ("qty is a float", lambda: _with(items=[{"sku": "A", "qty": 1.5}]), 422, "items.0.qty"),
    ("zero qty", lambda: _with(items=[{"sku": "A", "qty": 0}]), 422, "items.0.qty"),
    ("negative qty", lambda: _with(items=[{"sku": "A", "qty": -3}]), 422, "items.0.qty"),
    ("absurd qty", lambda: _with(items=[{"sku": "A", "qty": 10**9}]), 422, "items.0.qty"),
    ("store is a number", lambda: _with(store_id=5), 422, "store_id"),
    ("unknown field", lambda: _with(coupon="FREE"), 422, "coupon"),
    ("unknown item field", lambda: _with(items=[{"sku": "A", "qty": 1, "price_paise": 1}]), 422,
     "items.0.price_paise"),
    ("missing store", lambda: _with(store_id=KeyError), 422, "store_id"),
    ("missing items", lambda: _with(items=KeyError), 422, "items"),
    ("empty items", lambda: _with(items=[]), 422, "items"),
    ("too many items", lambda: _with(items=[{"sku": f"S{i}", "qty": 1} for i in range(101)]), 422, "items"),
    ("same sku twice", lambda: _with(items=[{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]), 422, "items"),
    ("unsupported payment", lambda: _with(payment_method="barter"), 422, "payment_method"),
    ("blank sku", lambda: _with(items=[{"sku": "", "qty": 1}]), 422, "items.0.sku"),
    ("body is a list", lambda: [_valid()], 422, None),
    ("customer in the body", lambda: _with(customer_id="someone-else"), 422, "customer_id"),
    # A product id is "<store>:<sku>": a store id with ":" could name another store's product.
    ("store id with a colon", lambda: _with(store_id="store-blr-indiranagar:AASHIRVAAD"), 422, "store_id"),
]


@pytest.mark.parametrize(("make", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_orders_are_refused_with_the_field_named(stack, customer, make, status, field) -> None:  # type: ignore[no-untyped-def]
    resp = customer.http.post(customer.url("/api/v1/orders"), json=make(), timeout=10)

    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == PROBLEM
    problem = resp.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == status
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer.user_id}) == 0


def _raw(customer, data: bytes, content_type: str | None, **headers: str):  # type: ignore[no-untyped-def]
    if content_type:
        headers["Content-Type"] = content_type
    return customer.http.post(customer.url("/api/v1/orders"), data=data, headers=headers, timeout=10)


def test_malformed_json_is_400_with_where_it_broke(customer) -> None:  # type: ignore[no-untyped-def]
    resp = _raw(customer, b'{"customer_id": "x", "items": [', "application/json")
    assert resp.status_code == 400 and resp.headers["Content-Type"] == PROBLEM
    assert "line 1" in resp.json()["detail"]


def test_a_body_that_is_not_utf8_is_400(customer) -> None:  # type: ignore[no-untyped-def]
    assert _raw(customer, b'{"a": "\xff"}', "application/json").status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_is_415(customer, content_type) -> None:  # type: ignore[no-untyped-def]
    resp = _raw(customer, json.dumps(_valid()).encode(), content_type)
    assert resp.status_code == 415 and resp.headers["Content-Type"] == PROBLEM


def test_an_oversized_body_is_413(stack, customer) -> None:  # type: ignore[no-untyped-def]
    body = _valid() | {"padding": "x" * (stack.cfg.max_body_bytes + 1)}
    resp = _raw(customer, json.dumps(body).encode(), "application/json")
    assert resp.status_code == 413 and resp.headers["Content-Type"] == PROBLEM
    assert stack.db[collections.ORDERS].count_documents({"customer_id": customer.user_id}) == 0


def test_an_overlong_idempotency_key_is_400(customer) -> None:  # type: ignore[no-untyped-def]
    resp = customer.submit(_valid(), key="k" * 256)
    assert resp.status_code == 400 and resp.json()["type"] == "/problems/invalid-idempotency-key"


@pytest.mark.parametrize("query", [{"limit": "abc"}, {"limit": 0}, {"limit": 201}, {"offset": -1},
                                   {"offset": 10_001}])
def test_bad_paging_of_products_is_400(customer, query) -> None:  # type: ignore[no-untyped-def]
    resp = customer.http.get(customer.url("/api/v1/products"), params=query, timeout=10)
    assert resp.status_code == 400 and resp.headers["Content-Type"] == PROBLEM


def test_unknown_routes_and_methods_answer_in_the_same_format(customer) -> None:  # type: ignore[no-untyped-def]
    missing = customer.http.get(customer.url("/api/v1/nothing"), timeout=10)
    wrong = customer.http.delete(customer.url("/api/v1/orders"), timeout=10)
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert missing.headers["Content-Type"] == wrong.headers["Content-Type"] == PROBLEM
    assert "POST" in wrong.headers["Allow"]


def test_json_nested_past_the_recursion_limit_is_400_not_a_500(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 11: 60 KB of "[" fits the size limit and used to be a 500 with a traceback."""
    resp = _raw(customer, b"[" * 60_000, "application/json")
    assert resp.status_code == 400 and resp.headers["Content-Type"] == PROBLEM, resp.text[:300]
    assert resp.json()["detail"] == "the body nests too deeply"


def test_a_webhook_nested_too_deeply_or_signed_in_non_ascii_is_400(stack) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import hmac

    import requests

    url = stack.url("/webhooks/razorpay")
    deep = b"[" * 60_000
    signed = hmac.new(stack.cfg.razorpay_webhook_secret.encode(), deep, hashlib.sha256).hexdigest()
    nested = requests.post(url, data=deep, timeout=10,
                           headers={"Content-Type": "application/json", "X-Razorpay-Signature": signed})
    odd = requests.post(url, data=b'{"event": "payment.captured"}', timeout=10,
                        headers={"Content-Type": "application/json", "X-Razorpay-Signature": b"\xc3\xa9t\xc3\xa9"})

    assert nested.status_code == 400 and nested.headers["Content-Type"] == PROBLEM, nested.text[:300]
    assert odd.status_code == 400 and odd.headers["Content-Type"] == PROBLEM, odd.text[:300]


def test_search_without_words_needs_a_store_and_browses_only_that_one(customer) -> None:  # type: ignore[no-untyped-def]
    everything = customer.http.get(customer.url("/api/v1/search"), timeout=10)
    one_store = customer.http.get(customer.url("/api/v1/search"), params={"store_id": "store-blr-indiranagar"},
                                  timeout=10)
    assert everything.status_code == 422 and everything.headers["Content-Type"] == PROBLEM
    assert [e["field"] for e in everything.json()["errors"]] == ["q"]
    assert one_store.status_code == 200


@pytest.mark.parametrize("token_id", ["abc", "token_", "token_x%3Fcount%3D100", "token_a.b", "..%2Ftokens"])
def test_a_saved_card_id_is_checked_before_it_reaches_the_gateway(customer, token_id) -> None:  # type: ignore[no-untyped-def]
    resp = customer.http.delete(customer.url(f"/api/v1/payment-methods/{token_id}"), timeout=10)
    assert resp.status_code == 404 and resp.headers["Content-Type"] == PROBLEM
