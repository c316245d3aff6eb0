"""kirana.payments outcomes run again after a run cut short, against the real MongoDB wire protocol.

A run that captured or failed a payment can stop between its steps (MongoDB
failed, the worker died); its retry or redelivery runs the same outcome again
and must finish what was left: the order's move (with its event, one write) and its stock settle.
"""

from __future__ import annotations

from typing import Any

from kirana import db as collections
from kirana import fulfilment, orders, payments
from kirana.clock import now_ms
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status

LEASE = 60_000


def _awaiting_payment(database, status: str = "created") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """An online order reserved and awaiting payment attempt 1 (the attempt's doc as open_attempt writes it)."""
    database[collections.STORES].insert_one({"_id": "store-p", "name": "P", "city": "Pune"})
    database[collections.PRODUCTS].insert_one({"_id": "store-p:ATTA", "store_id": "store-p", "sku": "ATTA",
                                               "name": "Atta", "price_paise": 500, "stock": 10,
                                               "updated_at_ms": now_ms()})
    new = NewOrder("cust-1", "store-p", (OrderItem("ATTA", 2),), PaymentMethod.UPI)
    order_id = orders.place(database, new)[0]["_id"]
    outcome = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)
    assert outcome.status == Status.RESERVED
    pid = payments.attempt_id(order_id, 1)
    database[payments.PAYMENTS].insert_one({
        "_id": pid, "order_id": order_id, "attempt": 1, "customer_id": "cust-1", "amount_paise": 1000,
        "method": "upi", "status": status, "capturing_until_ms": 0, "razorpay_order_id": "order_P1",
        "created_at_ms": now_ms(), "updated_at_ms": now_ms(),
    })
    assert orders.move(database, order_id, Status.RESERVED, Status.AWAITING_PAYMENT,
                       guard={"payment_attempt": 1}, attempt=1) is not None
    return payments.get_attempt(database, pid)


def _statuses(database, order_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["status"] for e in orders.events(database, order_id)]


def _hold(database, order_id: str) -> int | None:  # type: ignore[no-untyped-def]
    return (database[collections.PRODUCTS].find_one({"_id": "store-p:ATTA"}).get("holds") or {}).get(order_id)


def test_a_capture_run_again_after_the_move_settles_the_stock(database) -> None:  # type: ignore[no-untyped-def]
    payment = _awaiting_payment(database, "captured")
    order_id = payment["order_id"]
    # The first run moved the order to confirmed (status and event, one write), then stopped: no settle.
    assert orders.move(database, order_id, orders.UNPAID, Status.CONFIRMED,
                       fields={"paid_payment_id": payment["_id"]}) is not None
    assert _hold(database, order_id) == 2

    settled = payments.complete_order(database, payment)

    assert (settled.order_status, settled.refund) == ("confirmed", False)
    assert _hold(database, order_id) is None
    assert _statuses(database, order_id).count("confirmed") == 1
    assert database[collections.PRODUCTS].find_one({"_id": "store-p:ATTA"})["stock"] == 8


def test_a_failure_run_again_after_marking_the_attempt_moves_the_order_and_writes_its_event(database) -> None:  # type: ignore[no-untyped-def]
    payment = _awaiting_payment(database)
    order_id = payment["order_id"]
    gateway_payment = {"id": "pay_P1", "status": "failed", "error_code": "BAD_REQUEST_ERROR"}
    # The first run marked the attempt failed, then stopped before moving the order.
    assert payments.advance(database, payment["_id"], payments.S.FAILED, razorpay_payment_id="pay_P1") is not None

    assert payments.mark_failed(database, payment, gateway_payment) is True

    order = orders.get(database, order_id)
    assert order["status"] == "payment_failed"
    assert _statuses(database, order_id)[-1] == "payment_failed"
    # Once more changes nothing.
    assert payments.mark_failed(database, payment, gateway_payment) is False
    assert _statuses(database, order_id).count("payment_failed") == 1


def test_opening_an_attempt_again_after_the_move_changes_nothing(database) -> None:  # type: ignore[no-untyped-def]
    payment = _awaiting_payment(database)
    order_id = payment["order_id"]

    # The retry finds the order waiting already: nothing to open (the gateway is not called).
    assert payments.open_attempt(database, None, order_id, 1, customer_id=None) is None  # type: ignore[arg-type]

    assert _statuses(database, order_id)[-1] == "awaiting_payment"
    assert _statuses(database, order_id).count("awaiting_payment") == 1
