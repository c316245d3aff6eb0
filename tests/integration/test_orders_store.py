"""Placing, reading and withdrawing orders in a real MongoDB-compatible store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
from pymongo import monitoring

from kirana import db as collections
from kirana import orders
from kirana.orders import IdempotencyConflict, NewOrder, OrderItem, OrderNotFound, PaymentMethod, Status


def _new(sku: str = "ATTA", qty: int = 1, customer: str = "cust-1") -> NewOrder:
    return NewOrder(customer, "store-t", (OrderItem(sku, qty),), PaymentMethod.COD)


def test_placing_stores_an_accepted_order_with_its_first_event_and_live_update(database) -> None:  # type: ignore[no-untyped-def]
    order, created = orders.place(database, _new())

    assert created and order["status"] == "accepted"
    stored = orders.get(database, order["_id"])
    assert stored["items"] == [{"sku": "ATTA", "qty": 1}]
    assert [e["status"] for e in orders.events(database, order["_id"])] == ["accepted"]
    assert stored["intents"]["live-accepted"]["args"] == [order["_id"], "accepted", order["created_at_ms"]]


def test_racing_retries_with_one_key_make_one_order(database) -> None:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: orders.place(database, _new(), idempotency_key="k-1"), range(8)))

    assert len({order["_id"] for order, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert database[collections.ORDERS].count_documents({}) == 1
    assert [e["status"] for e in orders.history(results[0][0])] == ["accepted"]


def test_one_key_with_another_body_conflicts(database) -> None:  # type: ignore[no-untyped-def]
    first, _ = orders.place(database, _new(qty=1), idempotency_key="k-2")

    with pytest.raises(IdempotencyConflict) as caught:
        orders.place(database, _new(qty=2), idempotency_key="k-2")

    assert caught.value.order_id == first["_id"]


def test_keys_belong_to_their_customer(database) -> None:  # type: ignore[no-untyped-def]
    mine, _ = orders.place(database, _new(customer="a"), idempotency_key="same")
    theirs, created = orders.place(database, _new(customer="b"), idempotency_key="same")

    assert created and mine["_id"] != theirs["_id"]


def test_withdrawing_removes_only_an_untouched_order(database) -> None:  # type: ignore[no-untyped-def]
    fresh, _ = orders.place(database, _new())
    moved, _ = orders.place(database, _new(customer="c2"))
    orders.move(database, moved["_id"], Status.ACCEPTED, Status.PROCESSING)

    assert orders.withdraw(database, fresh["_id"]) is True
    assert orders.withdraw(database, moved["_id"]) is False
    with pytest.raises(OrderNotFound):
        orders.get(database, fresh["_id"])
    assert orders.get(database, moved["_id"])["status"] == "processing"


def test_a_compare_and_set_move_happens_once(database) -> None:  # type: ignore[no-untyped-def]
    order, _ = orders.place(database, _new())

    first = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)
    second = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)

    assert first is not None and second is None
    assert [e["status"] for e in orders.events(database, order["_id"])] == ["accepted", "processing"]


def test_a_move_is_one_command_that_writes_the_status_and_its_event_together(mongo_server) -> None:  # type: ignore[no-untyped-def]
    commands: list[str] = []

    class Count(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            commands.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

        def failed(self, event: monitoring.CommandFailedEvent) -> None: ...

    client = pymongo.MongoClient(mongo_server, event_listeners=[Count()])
    database = client["kirana_test_one_write"]
    try:
        order, _ = orders.place(database, _new())
        assert commands == ["insert"]
        commands.clear()

        moved = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING, detail={"by": "t"})

        assert commands == ["findAndModify"]
        assert moved is not None and moved["status"] == "processing"
        stored = database[collections.ORDERS].find_one({"_id": order["_id"]})
        assert stored["history"]["processing"] == {"status": "processing", "seq": 1,
                                                   "at_ms": stored["updated_at_ms"], "detail": {"by": "t"}}
        # A move from a status the order is not in writes nothing, event included.
        commands.clear()
        assert orders.move(database, order["_id"], Status.ACCEPTED, Status.REJECTED) is None
        assert commands == ["findAndModify"]
        assert [e["status"] for e in orders.events(database, order["_id"])] == ["accepted", "processing"]
    finally:
        client.drop_database("kirana_test_one_write")
        client.close()


def test_a_status_reached_once_per_payment_attempt_has_one_event_per_attempt(database) -> None:  # type: ignore[no-untyped-def]
    order, _ = orders.place(database, NewOrder("c", "store-t", (OrderItem("ATTA", 1),), PaymentMethod.UPI))
    oid = order["_id"]
    orders.move(database, oid, Status.ACCEPTED, Status.PROCESSING)
    orders.move(database, oid, Status.PROCESSING, Status.RESERVED, fields={"payment_attempt": 1}, attempt=1)
    orders.move(database, oid, Status.RESERVED, Status.AWAITING_PAYMENT, attempt=1)
    orders.move(database, oid, Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED, attempt=1)
    orders.move(database, oid, Status.PAYMENT_FAILED, Status.RESERVED, fields={"payment_attempt": 2}, attempt=2)

    story = [e["status"] for e in orders.events(database, oid)]

    assert story == ["accepted", "processing", "reserved", "awaiting_payment", "payment_failed", "reserved"]
    assert set(orders.get(database, oid)["history"]) == {
        "accepted", "processing", "reserved-1", "awaiting_payment-1", "payment_failed-1", "reserved-2"}


def test_stuck_orders_are_found_oldest_first(database) -> None:  # type: ignore[no-untyped-def]
    a, _ = orders.place(database, _new(customer="a"))
    b, _ = orders.place(database, _new(customer="b"))
    done, _ = orders.place(database, _new(customer="c"))
    orders.move(database, done["_id"], Status.ACCEPTED, Status.REJECTED)

    found = orders.stuck(database, older_than_ms=b["created_at_ms"] + 1, limit=10)

    assert found == [a["_id"], b["_id"]]


def test_an_order_is_shown_with_its_events_from_one_read(database) -> None:  # type: ignore[no-untyped-def]
    order, _ = orders.place(database, _new())
    order_id = order["_id"]
    shown, shown_events = orders.with_events(database, order_id)
    assert shown["status"] == "accepted" and [e["status"] for e in shown_events] == ["accepted"]

    orders.move(database, order_id, Status.ACCEPTED, Status.PROCESSING)
    shown, shown_events = orders.with_events(database, order_id)

    assert [e["status"] for e in shown_events] == ["accepted", "processing"] == ["accepted", shown["status"]]
    with pytest.raises(OrderNotFound):
        orders.with_events(database, "ord_missing")
