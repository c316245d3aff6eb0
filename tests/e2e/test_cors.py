"""Issue 20: CORS is an explicit allow-list, off by default."""

from __future__ import annotations

import pytest
import requests

from tests.harness import api_server

pytestmark = pytest.mark.e2e

SHOP, EVIL = "https://shop.example", "https://evil.example"


def _preflight(base: str, origin: str) -> requests.Response:
    return requests.options(f"{base}/api/v1/orders", timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})


def test_by_default_no_origin_is_allowed(stack, customer) -> None:  # type: ignore[no-untyped-def]
    preflight = _preflight(stack.base_url, SHOP)
    read = customer.http.get(customer.url("/api/v1/products"), headers={"Origin": SHOP}, timeout=10)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert read.status_code == 200 and "Access-Control-Allow-Origin" not in read.headers


def test_a_listed_origin_is_allowed_and_no_other(stack, customer) -> None:  # type: ignore[no-untyped-def]
    origins = f"{SHOP}, https://b.example"
    with api_server(stack.run_dir, stack.cfg, name="api-cors", CORS_ALLOWED_ORIGINS=origins) as api:
        base = f"http://127.0.0.1:{api.port}"
        allowed, refused = _preflight(base, SHOP), _preflight(base, EVIL)
        read = requests.get(f"{base}/api/v1/products", timeout=10, headers={**customer.http.headers, "Origin": SHOP})

    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == SHOP
    assert "idempotency-key" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert read.status_code == 200 and read.headers["Access-Control-Allow-Origin"] == SHOP
