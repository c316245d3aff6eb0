"""kirana.fulfilment against a real MongoDB wire protocol (nx-27017 or MONGO_URL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from kirana import db as collections
from kirana import fulfilment, orders, stock
from kirana.clock import now_ms
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status

LEASE = 60_000


def _run(database, order_id: str):  # type: ignore[no-untyped-def]
    return fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)


def _shop(database, **stocks: int) -> str:  # type: ignore[no-untyped-def]
    database[collections.STORES].insert_one({"_id": "store-t", "name": "T", "city": "Pune"})
    database[collections.PRODUCTS].insert_many([
        {"_id": f"store-t:{sku}", "store_id": "store-t", "sku": sku, "name": sku.title(), "price_paise": 100 * (i + 1),
         "stock": qty, "updated_at_ms": now_ms()}
        for i, (sku, qty) in enumerate(stocks.items())
    ])
    return "store-t"


def _order(database, *items: tuple[str, int], store: str = "store-t") -> str:  # type: ignore[no-untyped-def]
    new = NewOrder("cust-1", store, tuple(OrderItem(s, q) for s, q in items), PaymentMethod.COD)
    return orders.place(database, new)[0]["_id"]


def _stock(database, sku: str) -> int:  # type: ignore[no-untyped-def]
    return database[collections.PRODUCTS].find_one({"_id": f"store-t:{sku}"})["stock"]


def test_confirming_takes_the_stock_and_prices_from_the_catalog(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10, DAL=5)
    order_id = _order(database, ("ATTA", 2), ("DAL", 1))

    outcome = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)

    order = orders.get(database, order_id)
    assert (outcome.status, outcome.acted) == ("confirmed", True)
    assert order["total_paise"] == 2 * 100 + 1 * 200
    assert (_stock(database, "ATTA"), _stock(database, "DAL")) == (8, 4)
    assert "claim" not in order


def test_a_second_run_changes_nothing(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    order_id = _order(database, ("ATTA", 2))
    fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)
    before = orders.get(database, order_id)

    again = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)

    assert again.acted is False
    assert orders.get(database, order_id) == before
    assert _stock(database, "ATTA") == 8
    assert [e["status"] for e in orders.events(database, order_id)] == ["accepted", "processing", "confirmed"]


def test_a_shortfall_rejects_and_gives_back_what_was_reserved(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10, DAL=1)
    order_id = _order(database, ("ATTA", 3), ("DAL", 2))

    outcome = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)

    order = orders.get(database, order_id)
    assert (outcome.status, outcome.reason) == ("rejected", "out_of_stock")
    assert order["reject_detail"] == {"sku": "DAL", "wanted": 2, "available": 1}
    assert (_stock(database, "ATTA"), _stock(database, "DAL")) == (10, 1)
    assert not database[collections.PRODUCTS].find_one({"_id": "store-t:ATTA"}).get("holds")


def test_a_run_that_finds_a_live_claim_leaves_the_order_alone(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    order_id = _order(database, ("ATTA", 1))
    orders.move(database, order_id, Status.ACCEPTED, Status.PROCESSING,
                fields={"claim": {"token": "other", "until_ms": now_ms() + LEASE}})

    outcome = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)

    assert (outcome.status, outcome.acted) == ("processing", False)
    assert _stock(database, "ATTA") == 10


def test_a_dead_runs_expired_claim_is_taken_over_and_its_holds_reused(database) -> None:  # type: ignore[no-untyped-def]
    # Given a run that claimed the order, reserved its stock, then died.
    _shop(database, ATTA=10)
    order_id = _order(database, ("ATTA", 4))
    orders.move(database, order_id, Status.ACCEPTED, Status.PROCESSING,
                fields={"claim": {"token": "dead", "until_ms": now_ms() - 1}})
    assert isinstance(stock.reserve(database, "store-t", order_id, "ATTA", 4), stock.Reserved)

    # When the redelivered message runs.
    outcome = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)

    # Then the order is confirmed and the stock was taken once.
    assert (outcome.status, outcome.acted) == ("confirmed", True)
    assert _stock(database, "ATTA") == 6


def test_a_crash_between_confirming_and_settling_is_finished_by_the_redelivery(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    order_id = _order(database, ("ATTA", 2))
    orders.move(database, order_id, Status.ACCEPTED, Status.PROCESSING,
                fields={"claim": {"token": "t", "until_ms": now_ms() + LEASE}})
    stock.reserve(database, "store-t", order_id, "ATTA", 2)
    orders.move(database, order_id, Status.PROCESSING, Status.CONFIRMED, unset=("claim",))

    fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE)

    product = database[collections.PRODUCTS].find_one({"_id": "store-t:ATTA"})
    assert product["stock"] == 8
    assert order_id not in product.get("holds", {})


def test_concurrent_runs_of_one_order_confirm_it_once(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10, DAL=10)
    order_id = _order(database, ("ATTA", 3), ("DAL", 2))

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _run(database, order_id), range(8)))

    assert sum(o.acted for o in outcomes) == 1
    assert (_stock(database, "ATTA"), _stock(database, "DAL")) == (7, 8)


def test_many_orders_racing_for_little_stock_never_oversell(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=20)
    ids = [_order(database, ("ATTA", 3)) for _ in range(12)]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda oid: _run(database, oid), ids))

    confirmed = [o for o in outcomes if o.status == "confirmed"]
    assert len(confirmed) == 6
    assert _stock(database, "ATTA") == 2


def test_an_online_order_is_reserved_with_its_stock_held_until_paid(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    new = NewOrder("cust-1", "store-t", (OrderItem("ATTA", 4),), PaymentMethod.UPI)
    order_id = orders.place(database, new)[0]["_id"]

    outcome = fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=60_000)

    order = orders.get(database, order_id)
    product = database[collections.PRODUCTS].find_one({"_id": "store-t:ATTA"})
    assert (outcome.status, order["payment_attempt"], order["total_paise"]) == ("reserved", 1, 400)
    assert order["pay_by_ms"] > now_ms() + 50_000
    assert product["stock"] == 6 and product["holds"][order_id] == 4
