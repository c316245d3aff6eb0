"""Devices, carts, offline sync and store analytics against a real MongoDB wire protocol."""

from __future__ import annotations

from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kirana import analytics, carts, catalog, devices, fulfilment, orders, payments, sync
from kirana import db as collections
from kirana.clock import now_ms
from kirana.devices import Platform
from kirana.orders import NewOrder, OrderItem, PaymentMethod

STORE = "store-m"
IST = ZoneInfo("Asia/Kolkata")


def _shop(database, **stocks: int) -> None:  # type: ignore[no-untyped-def]
    database[collections.STORES].insert_one({"_id": STORE, "name": "M", "city": "Pune"})
    database[collections.PRODUCTS].insert_many([
        {"_id": f"{STORE}:{sku}", "store_id": STORE, "sku": sku, "name": sku.title(), "price_paise": 100 * (i + 1),
         "stock": qty, "category": "staples" if i % 2 == 0 else "dairy", "updated_at_ms": now_ms()}
        for i, (sku, qty) in enumerate(stocks.items())
    ])


def _price(database, sku: str, paise: int) -> None:  # type: ignore[no-untyped-def]
    database[collections.PRODUCTS].update_one({"_id": f"{STORE}:{sku}"}, {"$set": {"price_paise": paise}})


# --- devices -----------------------------------------------------------------------------------


def test_registering_a_token_twice_is_one_device_and_a_refresh_keeps_its_id(database) -> None:  # type: ignore[no-untyped-def]
    first = devices.register(database, "u1", platform=Platform.ANDROID, token="tok-aaaaaaaa", app_version="1.0")
    again = devices.register(database, "u1", platform=Platform.ANDROID, token="tok-aaaaaaaa", app_version="1.1")
    refreshed = devices.register(database, "u1", platform=Platform.ANDROID, token="tok-bbbbbbbb", app_version="1.1",
                                 replaces="tok-aaaaaaaa")

    assert again["_id"] == first["_id"] and again["app_version"] == "1.1"
    assert refreshed["_id"] == first["_id"] and refreshed["token"] == "tok-bbbbbbbb"
    assert [d["token"] for d in devices.mine(database, "u1")] == ["tok-bbbbbbbb"]


def test_a_dead_token_is_forgotten_and_a_canonical_one_replaces_it(database) -> None:  # type: ignore[no-untyped-def]
    kept = devices.register(database, "u1", platform=Platform.IOS, token="tok-old-1111", app_version="1")
    devices.register(database, "u1", platform=Platform.ANDROID, token="tok-dead-2222", app_version="1")

    assert devices.forget_token(database, "tok-dead-2222")
    assert devices.replace_token(database, "tok-old-1111", "tok-new-1111")
    assert devices.push_targets(database, "u1") == [(kept["_id"], "tok-new-1111")]


# --- carts -------------------------------------------------------------------------------------


def test_the_priced_cart_shows_a_price_change_and_stock_running_out(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10, DAL=1, GHEE=5)
    carts.set_quantity(database, "c1", STORE, "ATTA", 2)
    carts.set_quantity(database, "c1", STORE, "DAL", 1)
    cart = carts.set_quantity(database, "c1", STORE, "GHEE", 1)

    _price(database, "ATTA", 150)  # was 100
    _price(database, "GHEE", 250)  # was 300
    database[collections.PRODUCTS].update_one({"_id": f"{STORE}:DAL"}, {"$set": {"stock": 0}})
    shown = carts.priced(database, carts.get(database, "c1", STORE))

    lines = {line["sku"]: line for line in shown["lines"]}
    assert lines["ATTA"]["changes"] == ["price_up"] and lines["ATTA"]["line_total_paise"] == 300
    assert lines["GHEE"]["changes"] == ["price_down"] and lines["GHEE"]["price_paise_at_add"] == 300
    assert lines["DAL"]["changes"] == ["out_of_stock"]
    assert shown["total_paise"] == 300 + 250  # what cannot be bought is not in the total
    assert shown["version"] == cart["version"] == 3


def test_checking_out_twice_at_one_version_is_one_order(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    carts.set_quantity(database, "c1", STORE, "ATTA", 2)
    cart = carts.for_checkout(database, "c1", STORE, None)
    order, created = orders.place(database, carts.to_order(cart, PaymentMethod.COD),
                                  idempotency_key=carts.checkout_key(cart))
    carts.checked_out(database, cart, order["_id"])

    retry = carts.for_checkout(database, "c1", STORE, cart["version"])

    assert created and retry["replayed_order_id"] == order["_id"]
    assert carts.get(database, "c1", STORE)["items"] == {}
    with pytest.raises(carts.EmptyCart):
        carts.for_checkout(database, "c1", STORE, None)


# --- sync --------------------------------------------------------------------------------------


def _handlers(database) -> sync.Orders:  # type: ignore[no-untyped-def]
    return sync.Orders(submit=lambda new, key: orders.place(database, new, idempotency_key=key)[0],
                       cancel=lambda order_id: payments.cancel(database, order_id).status)


def _op(op_id: str, kind: str, seq: int, data: dict[str, Any], at: int = 1_000) -> dict[str, Any]:
    return {"op_id": op_id, "kind": kind, "seq": seq, "client_at_ms": at, "data": data}


def test_operations_apply_in_client_order_whatever_order_they_arrive_in(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    ops = [_op("c", "cart.set", 3, {"store_id": STORE, "sku": "ATTA", "qty": 3}),
           _op("a", "cart.set", 1, {"store_id": STORE, "sku": "ATTA", "qty": 1}),
           _op("b", "cart.remove", 2, {"store_id": STORE, "sku": "ATTA"})]
    sync.store_batch(database, user_id="c1", role="customer", device_id="dev1", ops=ops)

    sync.apply_device(database, "c1", "dev1", _handlers(database), limit=100)

    applied = sorted(database[sync.OPERATIONS].find({"device_id": "dev1"}), key=lambda o: o["applied_at_ms"])
    assert [o["op_id"] for o in sorted(applied, key=sync.order_key)] == ["a", "b", "c"]
    assert carts.get(database, "c1", STORE)["items"]["ATTA"]["qty"] == 3  # c last, not b


def test_equal_client_keys_fall_back_to_the_order_of_arrival(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    sync.store_batch(database, user_id="c1", role="customer", device_id="dev1",
                     ops=[_op("x", "cart.set", 0, {"store_id": STORE, "sku": "ATTA", "qty": 5}, at=7)])
    sync.store_batch(database, user_id="c1", role="customer", device_id="dev1",
                     ops=[_op("y", "cart.set", 0, {"store_id": STORE, "sku": "ATTA", "qty": 2}, at=7)])

    sync.apply_device(database, "c1", "dev1", _handlers(database), limit=100)

    assert carts.get(database, "c1", STORE)["items"]["ATTA"]["qty"] == 2


def test_a_batch_stored_three_times_applies_each_operation_once(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10)
    ops = [_op("o1", "order.submit", 1, {"store_id": STORE, "items": [{"sku": "ATTA", "qty": 1}],
                                         "payment_method": "cod"})]
    for _ in range(3):
        sync.store_batch(database, user_id="c1", role="customer", device_id="dev1", ops=ops)  # new batch id each time
        sync.apply_device(database, "c1", "dev1", _handlers(database), limit=100)

    assert database[collections.ORDERS].count_documents({"customer_id": "c1"}) == 1
    assert database[sync.OPERATIONS].count_documents({"device_id": "dev1"}) == 1
    assert len(sync.finish_batches(database, "c1", "dev1")) == 3


def test_conflicts_are_reported_with_their_reason(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10, DAL=0)
    placed = orders.place(database, NewOrder("c1", STORE, (OrderItem("ATTA", 1),), PaymentMethod.COD))[0]
    fulfilment.process_order(database, placed["_id"], lease_ms=60_000, pay_within_ms=60_000)
    payments.cancel(database, placed["_id"])
    ops = [_op("p", "cart.set", 1, {"store_id": STORE, "sku": "ATTA", "qty": 1, "price_paise": 90}),
           _op("s", "order.submit", 2, {"store_id": STORE, "items": [{"sku": "DAL", "qty": 1}]}),
           _op("k", "order.cancel", 3, {"order_id": placed["_id"]}),
           _op("r", "location", 4, {"order_id": placed["_id"], "lat": 18.5, "lng": 73.8})]
    batch, _ = sync.store_batch(database, user_id="c1", role="customer", device_id="dev1", ops=ops)

    sync.apply_device(database, "c1", "dev1", _handlers(database), limit=100)

    shown = {r["op_id"]: r for r in sync.results(database, batch)}
    assert (shown["p"]["status"], shown["p"]["reason"]) == ("conflict", "price_changed")
    assert shown["p"]["result"]["price_paise"] == 100
    assert (shown["s"]["status"], shown["s"]["reason"]) == ("conflict", "out_of_stock")
    assert (shown["k"]["status"], shown["k"]["reason"]) == ("conflict", "order_already_cancelled")
    assert (shown["r"]["status"], shown["r"]["reason"]) == ("rejected", "not_allowed")  # customers send no locations
    assert database[collections.ORDERS].count_documents({"customer_id": "c1"}) == 1


def test_client_times_are_moved_onto_the_server_clock_by_the_batch_skew(database) -> None:  # type: ignore[no-untyped-def]
    # The device's clock runs an hour behind: it sent the batch at (server now - 1 h).
    behind = now_ms() - 3_600_000
    point = _op("l1", "location", 1, {"order_id": "o", "lat": 1, "lng": 2}, at=behind - 60_000)
    batch, _ = sync.store_batch(database, user_id="r1", role="rider", device_id="dev9", sent_at_ms=behind, ops=[point])

    op = database[sync.OPERATIONS].find_one({"_id": sync.op_key("r1", "dev9", "l1")})
    assert 3_590_000 <= batch["skew_ms"] <= 3_610_000
    assert op["at_ms"] == op["client_at_ms"] + batch["skew_ms"]  # a minute before it arrived, on the server's clock
    assert op["at_ms"] <= batch["received_at_ms"]


# --- analytics ---------------------------------------------------------------------------------


def test_analytics_equal_a_recomputation_however_often_orders_are_replayed(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=1000, DAL=1000, GHEE=2)
    placed = []
    for i in range(30):
        items = (OrderItem("ATTA", 1 + i % 3),) + ((OrderItem("GHEE", 1),) if i % 7 == 0 else ())
        new = NewOrder(f"c{i % 8}", STORE, items, [PaymentMethod.COD, PaymentMethod.UPI][i % 2])
        order = orders.place(database, new)[0]
        fulfilment.process_order(database, order["_id"], lease_ms=60_000, pay_within_ms=60_000)
        placed.append(order["_id"])
    updater = analytics.Updater(database, IST, resum_every_ms=0)

    for _ in range(3):  # replays change nothing
        updater.resum(updater.update_orders(database[collections.ORDERS].find({"_id": {"$in": placed}})))
    while updater.scan(7).more:
        pass
    report = analytics.report(database, STORE, "2000-01-01", "2100-01-01")

    found = list(database[collections.ORDERS].find({"store_id": STORE}))
    sold = [o for o in found if o["status"] in analytics.SOLD]
    assert report["orders"] == len(found) == 30
    assert report["sold_orders"] == len(sold)
    assert report["sales_paise"] == sum(o["total_paise"] for o in sold)
    assert sum(report["orders_by_status"].values()) == 30
    assert report["orders_by_status"] == dict(Counter(o["status"] for o in found))
    assert report["orders_by_status"]["rejected"] > 0  # GHEE ran out; unpaid UPI orders are not sold
    assert sum(h["sales_paise"] for h in report["sales_by_hour"]) == report["sales_paise"]
    atta = next(p for p in report["top_products"] if p["sku"] == "ATTA")
    assert atta["qty"] == sum(line["qty"] for o in sold for line in o["lines"] if line["sku"] == "ATTA")
    assert {m: v["orders"] for m, v in report["payment_methods"].items()} == {
        m: sum(1 for o in sold if o["payment_method"] == m) for m in {o["payment_method"] for o in sold}}
    assert report["repeat_customer_rate"] == 1.0  # 8 customers, each bought more than once


def test_an_order_keeps_the_category_it_was_sold_under_and_older_orders_read_their_products(database) -> None:  # type: ignore[no-untyped-def]
    _shop(database, ATTA=10, DAL=10)
    new = NewOrder("c1", STORE, (OrderItem("ATTA", 1), OrderItem("DAL", 1)), PaymentMethod.COD)
    order = orders.place(database, new)[0]
    fulfilment.process_order(database, order["_id"], lease_ms=60_000, pay_within_ms=60_000)
    # The shop recategorises after the sale; an order from before lines kept their category.
    database[collections.PRODUCTS].update_one({"_id": f"{STORE}:ATTA"}, {"$set": {"category": "flour"}})
    sold = database[collections.ORDERS].find_one({"_id": order["_id"]})
    older = {**sold, "_id": "ord_older", "lines": [{k: v for k, v in line.items() if k != "category"}
                                                   for line in sold["lines"]]}

    kept = catalog.line_categories(database, [sold])
    read = catalog.line_categories(database, [older])

    assert [line["category"] for line in sold["lines"]] == ["staples", "dairy"]
    assert kept == {f"{STORE}:ATTA": "staples", f"{STORE}:DAL": "dairy"}
    assert read == {f"{STORE}:ATTA": "flour", f"{STORE}:DAL": "dairy"}
    analytics.Updater(database, IST).update_orders([sold])
    contribution = database[analytics.STORE_ANALYTICS].find_one({"_id": f"order:{order['_id']}"})
    assert {line["sku"]: line["category"] for line in contribution["lines"]} == {"ATTA": "staples", "DAL": "dairy"}


def test_a_stores_day_is_summed_at_most_once_per_interval_and_the_mark_outlives_the_run(database) -> None:  # type: ignore[no-untyped-def]
    import time

    _shop(database, ATTA=100)
    updater = analytics.Updater(database, IST, resum_every_ms=60_000)

    def place(n: int) -> None:
        for i in range(n):
            order = orders.place(database, NewOrder(f"c{i}", STORE, (OrderItem("ATTA", 1),), PaymentMethod.COD))[0]
            fulfilment.process_order(database, order["_id"], lease_ms=60_000, pay_within_ms=60_000)
        time.sleep(analytics.SCAN_LAG_MS / 1000 + 0.1)  # older than the scan's lag

    def summed() -> int:
        return analytics.report(database, STORE, "2000-01-01", "2100-01-01")["orders"]

    place(2)
    first = updater.scan(100)
    place(3)
    second = analytics.Updater(database, IST, resum_every_ms=60_000).scan(100)  # another run: the mark is stored
    after_first, after_second = 2, summed()
    cursor = database[analytics.STORE_ANALYTICS].find_one({"_id": analytics.CURSOR_ID})
    database[analytics.STORE_ANALYTICS].update_one(  # a minute passes
        {"_id": analytics.CURSOR_ID}, {"$set": {"days": [{**d, "summed_at_ms": 0} for d in cursor["days"]]}})
    third = analytics.Updater(database, IST, resum_every_ms=60_000).scan(100)

    assert (first.orders, first.sum_due_in_ms) == (2, None)  # the day's first sum is not held back
    assert second.orders == 3 and 0 < (second.sum_due_in_ms or 0) <= 60_000
    assert after_second == after_first  # summed again only when due
    assert (third.orders, third.sum_due_in_ms) == (0, None)
    assert summed() == 5


def test_a_device_that_moves_to_another_user_keeps_the_two_users_operations_apart(database) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 8: operations were keyed by device, so a second user's op ids collided with the first's."""
    _shop(database, ATTA=10)
    submit = _op("o1", "order.submit", 1, {"store_id": STORE, "items": [{"sku": "ATTA", "qty": 1}],
                                           "payment_method": "cod"})
    first, _ = sync.store_batch(database, user_id="c1", role="customer", device_id="shared", ops=[submit],
                                batch_id="b1")
    second, created = sync.store_batch(database, user_id="c2", role="customer", device_id="shared", ops=[submit],
                                       batch_id="b1")  # the same client batch id and op id, another user

    assert created and first["_id"] != second["_id"]
    assert sync.view(database, first)["id"] == sync.view(database, second)["id"] == "b1"
    sync.apply_device(database, "c1", "shared", _handlers(database), limit=100)
    sync.apply_device(database, "c2", "shared", _handlers(database), limit=100)
    assert database[collections.ORDERS].count_documents({"customer_id": "c1"}) == 1
    assert database[collections.ORDERS].count_documents({"customer_id": "c2"}) == 1
    assert sync.get_batch(database, "c2", "b1")["_id"] == second["_id"]
    assert sync.get_batch(database, "c1", second["_id"]) is None  # not c1's


def test_an_offline_order_keeps_to_the_apis_bounds(database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kirana.config import settings

    _shop(database, ATTA=10_000)
    too_much = settings().max_item_qty + 1
    batch, _ = sync.store_batch(database, user_id="c1", role="customer", device_id="dev9", ops=[
        _op("big", "order.submit", 1, {"store_id": STORE, "items": [{"sku": "ATTA", "qty": too_much}],
                                       "payment_method": "cod"})])
    sync.apply_device(database, "c1", "dev9", _handlers(database), limit=100)

    shown = {r["op_id"]: r for r in sync.results(database, batch)}
    assert (shown["big"]["status"], shown["big"]["reason"]) == ("rejected", "invalid")
    assert database[collections.ORDERS].count_documents({"customer_id": "c1"}) == 0
