"""200 orders at once over 20 SKUs with too little stock for all of them."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from kirana import db as collections
from kirana.clock import now_ms
from tests.harness import TERMINAL

pytestmark = pytest.mark.e2e


def test_stock_never_goes_negative_and_every_unit_sold_left_the_shelf(stack) -> None:  # type: ignore[no-untyped-def]
    # Given 20 products of a store of the test's own, 15 units each.
    store = f"store-conc-{uuid.uuid4().hex[:6]}"
    stack.db[collections.STORES].insert_one({"_id": store, "name": "Concurrency Kirana", "city": "Pune"})
    skus = [f"CONC-{i:02d}" for i in range(20)]
    stack.db[collections.PRODUCTS].insert_many([
        {"_id": f"{store}:{sku}", "store_id": store, "sku": sku, "name": sku, "category": "Test",
         "price_paise": 1000 + i, "stock": 15, "updated_at_ms": now_ms()}
        for i, sku in enumerate(skus)
    ])
    rng = random.Random(7)
    bodies = [
        {"store_id": store, "payment_method": "cod",
         "items": [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(skus, rng.randint(1, 3))]}
        for _ in range(200)
    ]
    shoppers = [stack.customer() for _ in range(5)]

    # When 200 orders arrive at once from 20 clients.
    def submit(n: int) -> str:
        with requests.Session() as http:
            http.headers.update(shoppers[n % len(shoppers)].http.headers)
            resp = http.post(stack.url("/api/v1/orders"), json=bodies[n], timeout=30)
        assert resp.status_code == 202, resp.text
        return resp.json()["id"]

    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(submit, range(len(bodies))))

    # Then every order ends confirmed or rejected...
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = stack.db[collections.ORDERS].count_documents({"_id": {"$in": ids}, "status": {"$in": list(TERMINAL)}})
        if done == len(ids):
            break
        time.sleep(0.2)
    orders = list(stack.db[collections.ORDERS].find({"_id": {"$in": ids}}))
    assert {o["status"] for o in orders} <= TERMINAL, [o["status"] for o in orders if o["status"] not in TERMINAL]
    confirmed = [o for o in orders if o["status"] == "confirmed"]
    rejected = [o for o in orders if o["status"] == "rejected"]
    assert confirmed and rejected, "the stock was meant to run out part-way"
    assert {o["reject_reason"] for o in rejected} == {"out_of_stock"}
    # ... stock never went below zero, and units sold = stock consumed, per SKU.
    products = {p["sku"]: p for p in stack.db[collections.PRODUCTS].find({"store_id": store})}
    for sku in skus:
        sold = sum(line["qty"] for o in confirmed for line in o["lines"] if line["sku"] == sku)
        assert products[sku]["stock"] >= 0
        assert 15 - products[sku]["stock"] == sold, sku
        assert not products[sku].get("holds"), f"{sku} keeps holds {products[sku].get('holds')}"
