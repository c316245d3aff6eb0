"""Placing, reading and withdrawing orders in a real MongoDB-compatible store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from kirana import db as collections
from kirana import orders
from kirana.orders import IdempotencyConflict, NewOrder, OrderItem, OrderNotFound, PaymentMethod, Status


def _new(sku: str = "ATTA", qty: int = 1, customer: str = "cust-1") -> NewOrder:
    return NewOrder(customer, "store-t", (OrderItem(sku, qty),), PaymentMethod.COD)


def test_placing_stores_an_accepted_order_with_its_first_event(database) -> None:  # type: ignore[no-untyped-def]
    published: list[tuple[str, dict]] = []

    order, created = orders.place(database, _new(), publish=lambda oid, msg: published.append((oid, msg)))

    assert created and order["status"] == "accepted"
    assert orders.get(database, order["_id"])["items"] == [{"sku": "ATTA", "qty": 1}]
    assert [e["status"] for e in orders.events(database, order["_id"])] == ["accepted"]
    assert published == [(order["_id"], {"order_id": order["_id"], "status": "accepted",
                                         "at_ms": order["created_at_ms"]})]


def test_racing_retries_with_one_key_make_one_order(database) -> None:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: orders.place(database, _new(), idempotency_key="k-1"), range(8)))

    assert len({order["_id"] for order, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert database[collections.ORDERS].count_documents({}) == 1
    assert database[collections.ORDER_EVENTS].count_documents({}) == 1


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
    assert orders.events(database, fresh["_id"]) == []
    assert orders.get(database, moved["_id"])["status"] == "processing"


def test_a_compare_and_set_move_happens_once(database) -> None:  # type: ignore[no-untyped-def]
    order, _ = orders.place(database, _new())

    first = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)
    second = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)

    assert first is not None and second is None
    assert [e["status"] for e in orders.events(database, order["_id"])] == ["accepted", "processing"]


def test_a_move_that_finds_its_target_reached_writes_the_missing_event_as_the_mover_would(database) -> None:  # type: ignore[no-untyped-def]
    order, _ = orders.place(database, _new())
    moved = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)
    assert moved is not None
    # As if the run that moved it had stopped before writing the event.
    database[collections.ORDER_EVENTS].delete_one({"_id": f"{order['_id']}:processing"})

    assert orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING, detail={"by": "retry"}) is None

    event = database[collections.ORDER_EVENTS].find_one({"_id": f"{order['_id']}:processing"})
    assert event is not None
    assert (event["at_ms"], event["detail"]) == (moved["updated_at_ms"], {"by": "retry"})
    # A move whose target the order has not reached writes nothing.
    assert orders.move(database, order["_id"], Status.ACCEPTED, Status.REJECTED) is None
    assert database[collections.ORDER_EVENTS].count_documents({"order_id": order["_id"], "status": "rejected"}) == 0


def test_stuck_orders_are_found_oldest_first(database) -> None:  # type: ignore[no-untyped-def]
    a, _ = orders.place(database, _new(customer="a"))
    b, _ = orders.place(database, _new(customer="b"))
    done, _ = orders.place(database, _new(customer="c"))
    orders.move(database, done["_id"], Status.ACCEPTED, Status.REJECTED)

    found = orders.stuck(database, older_than_ms=b["created_at_ms"] + 1, limit=10)

    assert found == [a["_id"], b["_id"]]


def test_an_order_is_shown_with_its_events_as_one_story(database) -> None:  # type: ignore[no-untyped-def]
    order, _ = orders.place(database, _new())
    order_id = order["_id"]
    shown, shown_events = orders.with_events(database, order_id)
    assert shown["status"] == "accepted" and [e["status"] for e in shown_events] == ["accepted"]

    # A worker's move lands in the order a moment before its event: until the event is
    # there, the status is shown ahead of the events, never the events ahead of the status.
    database[collections.ORDERS].update_one({"_id": order_id}, {"$set": {"status": "processing"}})
    shown, shown_events = orders.with_events(database, order_id)
    assert shown["status"] == "processing" and [e["status"] for e in shown_events] == ["accepted"]

    orders.record_event(database, order_id, Status.PROCESSING, shown["created_at_ms"] + 1)
    shown, shown_events = orders.with_events(database, order_id)
    assert [e["status"] for e in shown_events] == ["accepted", "processing"] == ["accepted", shown["status"]]
    with pytest.raises(OrderNotFound):
        orders.with_events(database, "ord_missing")
