"""A task delivered twice changes nothing the second time."""

from __future__ import annotations

import time
import uuid

import pytest

from kirana import db as collections
from kirana import orders
from kirana.clock import now_ms
from kirana.orders import NewOrder, OrderItem, PaymentMethod
from tasks.app import app

pytestmark = pytest.mark.e2e


def _store_with_one_product(stack, stock: int) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    store = f"store-dup-{uuid.uuid4().hex[:6]}"
    stack.db[collections.STORES].insert_one({"_id": store, "name": "Dup Kirana", "city": "Pune"})
    stack.db[collections.PRODUCTS].insert_one({"_id": f"{store}:ATTA", "store_id": store, "sku": "ATTA",
                                               "name": "Atta", "price_paise": 5000, "stock": stock,
                                               "updated_at_ms": now_ms()})
    return store, f"{store}:ATTA"


def _wait(stack, order_id: str, status: str, timeout: float = 15) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order = stack.db[collections.ORDERS].find_one({"_id": order_id})
        if order["status"] == status:
            return order
        time.sleep(0.05)
    raise AssertionError(f"{order_id} is {order['status']}, not {status}")


def test_the_same_order_delivered_many_times_at_once_is_reserved_and_confirmed_once(stack) -> None:  # type: ignore[no-untyped-def]
    # Given an accepted order that was never enqueued.
    store, pid = _store_with_one_product(stack, stock=10)
    new = NewOrder("cust-dup", store, (OrderItem("ATTA", 3),), PaymentMethod.COD)
    order, _ = orders.place(stack.db, new)

    # When five copies of its message reach the orders pool together.
    for _ in range(5):
        app.send_task("orders.process", args=[order["_id"]])

    # Then it is confirmed once, and the shelf lost 3, not 15.
    confirmed = _wait(stack, order["_id"], "confirmed")
    time.sleep(0.5)  # let the stragglers finish
    assert stack.db[collections.PRODUCTS].find_one({"_id": pid})["stock"] == 7
    statuses = [e["status"] for e in orders.events(stack.db, order["_id"])]
    assert statuses == ["accepted", "processing", "confirmed"]
    assert confirmed["total_paise"] == 15000


def test_redelivering_a_finished_order_changes_nothing(stack, customer) -> None:  # type: ignore[no-untyped-def]
    store, pid = _store_with_one_product(stack, stock=10)
    resp = customer.submit({"store_id": store, "payment_method": "cod", "items": [{"sku": "ATTA", "qty": 2}]})
    order_id = resp.json()["id"]
    _wait(stack, order_id, "confirmed")
    # The leaderboards pool marks the order once its points are synced; settle that first.
    deadline = time.monotonic() + 15
    while (stack.db[collections.ORDERS].find_one({"_id": order_id}).get("loyalty_state") != "confirmed"
           and time.monotonic() < deadline):
        time.sleep(0.05)
    before = stack.db[collections.ORDERS].find_one({"_id": order_id})
    assert before.get("loyalty_state") == "confirmed"

    app.send_task("orders.process", args=[order_id])
    app.send_task("orders.process", args=[order_id])
    time.sleep(1.0)

    after = stack.db[collections.ORDERS].find_one({"_id": order_id})
    assert after == before
    assert stack.db[collections.PRODUCTS].find_one({"_id": pid})["stock"] == 8
    assert len(orders.events(stack.db, order_id)) == 3
