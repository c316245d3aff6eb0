"""Loyalty against real Redis and the MongoDB wire protocol: points, redemption, achievements, leaderboards."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from kirana import db as collections
from kirana import fulfilment, loyalty, orders, payments
from kirana.clock import now_ms
from kirana.loyalty import achievements, boards, ledger
from kirana.loyalty.rules import Rules
from kirana.orders import NewOrder, OrderItem, PaymentMethod

LEASE = 60_000
RULES = Rules(paise_per_point=1000, bonus_categories=frozenset({"Dairy"}), first_order_bonus=50,
              point_value_paise=25)


@pytest.fixture
def shop(database):  # type: ignore[no-untyped-def]
    """A store of its own (boards in the shared Redis are per store and city) with five categories."""
    store = f"store-{uuid.uuid4().hex[:8]}"
    city = f"City {uuid.uuid4().hex[:6]}"
    database[collections.STORES].insert_one({"_id": store, "name": "T", "city": city})
    cats = ["Dairy", "Atta & Flours", "Dals & Pulses", "Beverages", "Snacks & Namkeen"]
    database[collections.PRODUCTS].insert_many([
        {"_id": f"{store}:SKU{i}", "store_id": store, "sku": f"SKU{i}", "name": f"Item {i}", "category": cats[i],
         # ₹123.45, ₹234.56, ...: totals that do not divide evenly into points.
         "price_paise": 12_345 + 11_111 * i, "stock": 10_000, "updated_at_ms": now_ms()}
        for i in range(5)
    ])
    return store


@pytest.fixture
def lb(redis_client):  # type: ignore[no-untyped-def]
    return boards.Boards(redis_client)


def _place(database, store: str, customer: str, items: dict[str, int], redeem: int = 0) -> str:  # type: ignore[no-untyped-def]
    new = NewOrder(customer, store, tuple(OrderItem(s, q) for s, q in items.items()), PaymentMethod.COD,
                   redeem_points=redeem)
    return orders.place(database, new)[0]["_id"]


def _confirm(database, order_id: str) -> str:  # type: ignore[no-untyped-def]
    return fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=LEASE).status


def _expected_points(database, order_id: str, first: bool) -> int:  # type: ignore[no-untyped-def]
    order = orders.get(database, order_id)
    dairy = sum(line["line_total_paise"] for line in order["lines"] if line["sku"] == "SKU0")
    return order["total_paise"] // 1000 + dairy // 1000 + (50 if first else 0)


def _city(database, store: str) -> str:  # type: ignore[no-untyped-def]
    return boards.city_id(database[collections.STORES].find_one({"_id": store})["city"])


def test_concurrent_confirmations_for_one_customer_earn_exact_points(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    ids = [_place(database, shop, customer, {"SKU0": 1 + i % 3, f"SKU{1 + i % 4}": 2}) for i in range(8)]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda o: _confirm(database, o), ids)) == {"confirmed"}
        # Every order synced twice, all at once: award tasks racing each other and their replays.
        list(pool.map(lambda o: loyalty.sync_order(database, lb, o, RULES), ids + ids))

    first = database[collections.LOYALTY_ACCOUNTS].find_one({"_id": customer})["first_order_id"]
    expected = sum(_expected_points(database, o, first=o == first) for o in ids)
    assert ledger.balance(database, customer) == expected
    assert ledger.ledger_sum(database, customer) == expected
    assert database[collections.LOYALTY_LEDGER].count_documents({"rule": "first_order"}) == 1
    for scope_id in (shop, _city(database, shop)):
        scope = "store" if scope_id == shop else "city"
        for period in boards.PERIODS:
            board = boards.key(scope, scope_id, period, boards.bucket(period, now_ms()))
            assert lb.standing(board, customer) == (1, expected)


def test_the_same_award_run_five_times_writes_each_entry_once(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    order_id = _place(database, shop, customer, {"SKU0": 2, "SKU1": 1})
    _confirm(database, order_id)

    with ThreadPoolExecutor(5) as pool:
        runs = list(pool.map(lambda _: loyalty.sync_order(database, lb, order_id, RULES), range(5)))

    entries = list(database[collections.LOYALTY_LEDGER].find({"order_id": order_id}))
    assert sorted(e["rule"] for e in entries) == ["base", "bonus_category", "first_order"]
    assert sum(len(r.entries) for r in runs) == 3  # each inserted by exactly one run
    assert ledger.balance(database, customer) == _expected_points(database, order_id, first=True)
    board = boards.key("store", shop, "all", "all")
    assert lb.standing(board, customer) == (1, _expected_points(database, order_id, first=True))


def test_an_entry_inserted_but_never_applied_is_applied_once_by_the_next_run(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    order_id = _place(database, shop, customer, {"SKU1": 3})
    _confirm(database, order_id)
    order = orders.get(database, order_id)
    # A worker that died right after the insert: the entry is in the ledger, not in the balance or boards.
    crashed = ledger._entry(order, "base", ledger.EARN, order["total_paise"] // 1000,
                            at_ms=ledger.confirmed_at_ms(database, order), city=_city(database, shop), board=True)
    database[collections.LOYALTY_LEDGER].insert_one(crashed)
    assert ledger.balance(database, customer) == 0

    loyalty.sync_order(database, lb, order_id, RULES)
    loyalty.sync_order(database, lb, order_id, RULES)

    assert ledger.balance(database, customer) == ledger.ledger_sum(database, customer)
    assert ledger.balance(database, customer) == _expected_points(database, order_id, first=True)


def test_a_cancelled_order_has_its_points_reversed_once(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    kept = _place(database, shop, customer, {"SKU2": 1})
    gone = _place(database, shop, customer, {"SKU0": 4})
    for order_id in (kept, gone):
        _confirm(database, order_id)
        loyalty.sync_order(database, lb, order_id, RULES)
    before = ledger.balance(database, customer)
    gone_points = sum(e["points"] for e in database[collections.LOYALTY_LEDGER].find({"order_id": gone}))

    assert payments.cancel(database, gone).status == "cancelled"
    for _ in range(3):
        loyalty.sync_order(database, lb, gone, RULES)

    reversals = list(database[collections.LOYALTY_LEDGER].find({"order_id": gone, "kind": "reversal"}))
    assert len(reversals) == len({e["rule"] for e in reversals}) >= 2
    assert ledger.balance(database, customer) == before - gone_points == ledger.ledger_sum(database, customer)
    assert orders.get(database, gone)["loyalty_state"] == "cancelled"
    board = boards.key("store", shop, "all", "all")
    assert lb.standing(board, customer) == (1, before - gone_points)


def _fund(database, shop: str, customer: str, lb) -> int:  # type: ignore[no-untyped-def]
    order_id = _place(database, shop, customer, {"SKU4": 10})
    _confirm(database, order_id)
    loyalty.sync_order(database, lb, order_id, RULES)
    return ledger.balance(database, customer)


def test_two_racing_redemptions_never_take_the_balance_below_zero(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    balance = _fund(database, shop, customer, lb)
    spend = balance // 2 + 1  # either one fits, both do not
    ids = [_place(database, shop, customer, {"SKU3": 20}, redeem=spend) for _ in range(2)]

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda o: _confirm(database, o), ids))

    assert outcomes == ["confirmed", "rejected"]
    rejected = next(orders.get(database, o) for o in ids if orders.get(database, o)["status"] == "rejected")
    assert rejected["reject_reason"] == "insufficient_points"
    assert ledger.balance(database, customer) == balance - spend >= 0
    assert ledger.balance(database, customer) == ledger.ledger_sum(database, customer)


def test_redeemed_points_come_off_the_total_and_come_back_once_when_cancelled(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    balance = _fund(database, shop, customer, lb)
    order_id = _place(database, shop, customer, {"SKU3": 5}, redeem=40)
    assert _confirm(database, order_id) == "confirmed"
    order = orders.get(database, order_id)
    assert order["discount_paise"] == 40 * 25
    assert order["total_paise"] == order["subtotal_paise"] - 1000
    loyalty.sync_order(database, lb, order_id, RULES)
    earned = order["total_paise"] // 1000  # points on what was paid
    assert ledger.balance(database, customer) == balance - 40 + earned

    payments.cancel(database, order_id)
    for _ in range(3):
        loyalty.sync_order(database, lb, order_id, RULES)

    assert ledger.balance(database, customer) == balance == ledger.ledger_sum(database, customer)
    returned = database[collections.LOYALTY_LEDGER].find_one({"_id": f"{order_id}:redeem:reversal"})
    assert returned["points"] == 40


def test_points_worth_more_than_the_order_reject_it_and_take_nothing(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    balance = _fund(database, shop, customer, lb)
    too_much = _place(database, shop, customer, {"SKU0": 1}, redeem=balance)  # ₹123.45 against ₹150+ of points
    assert _confirm(database, too_much) == "rejected"
    assert orders.get(database, too_much)["reject_reason"] == "points_exceed_total"
    loyalty.sync_order(database, lb, too_much, RULES)
    assert ledger.balance(database, customer) == balance


def test_an_unpaid_order_that_expires_gives_back_what_it_redeemed(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    balance = _fund(database, shop, customer, lb)
    new = NewOrder(customer, shop, (OrderItem("SKU3", 2),), PaymentMethod.UPI, redeem_points=100)
    order_id = orders.place(database, new)[0]["_id"]
    # Paid online: reserved with the points debited, and already past its deadline.
    assert fulfilment.process_order(database, order_id, lease_ms=LEASE, pay_within_ms=-1).status == "reserved"
    assert ledger.balance(database, customer) == balance - 100

    assert order_id in payments.expire_unpaid(database, limit=50)
    for _ in range(3):
        loyalty.sync_order(database, lb, order_id, RULES)

    assert ledger.balance(database, customer) == balance == ledger.ledger_sum(database, customer)


def test_achievements_are_awarded_once_each(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    ids = [_place(database, shop, customer, {f"SKU{i % 5}": 1}) for i in range(10)]
    day = 86_400_000
    for i, order_id in enumerate(ids):
        _confirm(database, order_id)
        # Ten consecutive days in the past.
        at = now_ms() - (10 - i) * day
        database[collections.ORDERS].update_one({"_id": order_id}, {"$set": {"created_at_ms": at}})

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda o: loyalty.sync_order(database, lb, o, RULES), ids))

    got = {a["achievement"] for a in achievements.earned(database, customer)}
    assert got == {"first_order", "tenth_order", "week_streak", "explorer"}
    to_notify = [a for r in runs for a in r.achievements]
    assert {a for _, a in to_notify} == got  # each reported for notifying (twice at most while racing)
    for doc_id, _ in to_notify:
        achievements.mark_notified(database, doc_id)
    assert loyalty.sync_order(database, lb, ids[0], RULES).achievements == []


# --- leaderboards ---------------------------------------------------------------------------------


def _entries(store: str, city: str, n_customers: int, n: int, seed: int) -> list[dict]:
    """Board entries in random order, with reversals and ties, all in the current day."""
    rnd = random.Random(seed)
    now = now_ms()
    # Within the last hour, but never before today began (IST): in the first hour of a day an
    # hour ago is yesterday, and the current day's boards were empty (a CI run at 00:10 IST).
    day_start = boards.bucket_range_ms("day", boards.bucket("day", now))[0]  # type: ignore[index]
    base = max(now - 3_600_000, day_start)
    seconds = max(1, min(60, (now - base) // 1000))
    made = []
    for i in range(n):
        customer = f"c{rnd.randrange(n_customers):04d}"
        points = rnd.choice([5, 10, 10, 20])
        at = base + rnd.randrange(seconds) * 1000  # few distinct seconds: ties in time too
        entry = {"_id": f"o{i}:base", "customer_id": customer, "order_id": f"o{i}", "store_id": store, "city": city,
                 "rule": "base", "kind": "earn", "points": points, "board": True, "at_ms": at,
                 "created_at_ms": now_ms() - 60_000}
        made.append(entry)
        if rnd.random() < 0.2:
            made.append({**entry, "_id": f"o{i}:base:reversal", "kind": "reversal", "points": -points})
    rnd.shuffle(made)
    return made


def _snapshot(r, store: str, city: str) -> dict[str, list]:  # type: ignore[no-untyped-def]
    keys = [boards.key(s, sid, p, boards.bucket(p, now_ms())) for s, sid in (("store", store), ("city", city))
            for p in boards.PERIODS]
    return {k: r.zrange(k, 0, -1, withscores=True) for k in keys}


def test_a_rebuild_after_the_keys_are_lost_equals_the_incremental_board(database, redis_client, lb) -> None:  # type: ignore[no-untyped-def]
    store, city = f"store-{uuid.uuid4().hex[:8]}", f"city-{uuid.uuid4().hex[:8]}"
    for entry in _entries(store, city, 40, 400, seed=7):
        ledger.record(database, lb, entry)
    incremental = _snapshot(redis_client, store, city)
    assert all(len(members) > 10 for members in incremental.values())

    for k in incremental:
        redis_client.delete(k, f"{k}:built", f"{k}:recent")
    boards.refresh(database, lb, now_ms=now_ms(), margin_ms=0)
    assert _snapshot(redis_client, store, city) == incremental

    # And a board lost on its own is rebuilt by its first read, to the same members and order.
    board = boards.key("store", store, "week", boards.bucket("week", now_ms()))
    redis_client.delete(board, f"{board}:built", f"{board}:recent")
    view = loyalty.board_view(database, lb, "store", store, "week", limit=100, now_ms=now_ms(), margin_ms=0)
    expected = [(m, boards.decode(s)) for m, s in reversed(incremental[board]) if boards.decode(s) > 0]
    assert [(e["customer_id"], e["points"]) for e in view["entries"]] == expected


def test_ties_rank_the_earlier_achiever_first(database, lb) -> None:  # type: ignore[no-untyped-def]
    store, city = f"store-{uuid.uuid4().hex[:8]}", "tie-town"
    t = now_ms() - 600_000
    for i, (customer, at) in enumerate([("late", t + 5000), ("early", t), ("more", t + 9000)]):
        points = 30 if customer == "more" else 20
        ledger.record(database, lb, {"_id": f"t{i}:base", "customer_id": customer, "order_id": f"t{i}",
                                     "store_id": store, "city": city, "rule": "base", "kind": "earn",
                                     "points": points, "board": True, "at_ms": at, "created_at_ms": now_ms()})
    board = boards.key("store", store, "all", "all")
    assert lb.top(board, 10) == [("more", 30), ("early", 20), ("late", 20)]


def test_a_refresh_racing_live_updates_counts_every_entry_once(database, redis_client, lb) -> None:  # type: ignore[no-untyped-def]
    store, city = f"store-{uuid.uuid4().hex[:8]}", f"city-{uuid.uuid4().hex[:8]}"
    board = boards.key("store", store, "all", "all")

    def entry(i: int, created: int) -> dict:
        return {"_id": f"r{i}:base", "customer_id": "c1", "order_id": f"r{i}", "store_id": store, "city": city,
                "rule": "base", "kind": "earn", "points": 10, "board": True, "at_ms": now_ms() - 1000,
                "created_at_ms": created}

    old = entry(1, now_ms() - 60_000)
    ledger.record(database, lb, old)  # in the ledger and applied: the rebuild covers it
    boards.refresh(database, lb, now_ms=now_ms(), margin_ms=10_000)
    lb.apply(old)  # a replay after the rebuild
    assert lb.standing(board, "c1") == (1, 10)

    fresh = entry(2, now_ms())
    ledger.record(database, lb, fresh)  # newer than the next refresh's watermark: kept from :recent
    boards.refresh(database, lb, now_ms=now_ms(), margin_ms=10_000)
    lb.apply(fresh)
    assert lb.standing(board, "c1") == (1, 20)

    boards.refresh(database, lb, now_ms=now_ms() + 60_000, margin_ms=10_000)  # now the ledger covers both
    assert lb.standing(board, "c1") == (1, 20)
    assert redis_client.hlen(f"{board}:recent") == 0


def test_readers_during_refreshes_always_see_a_complete_board(database, redis_client, lb) -> None:  # type: ignore[no-untyped-def]
    store, city = f"store-{uuid.uuid4().hex[:8]}", f"city-{uuid.uuid4().hex[:8]}"
    members = 300
    database[collections.LOYALTY_LEDGER].insert_many([
        {"_id": f"m{i}:base", "customer_id": f"c{i:04d}", "order_id": f"m{i}", "store_id": store, "city": city,
         "rule": "base", "kind": "earn", "points": 1 + i, "board": True, "at_ms": now_ms() - 5000,
         "created_at_ms": now_ms() - 60_000}
        for i in range(members)
    ])
    board = boards.key("store", store, "all", "all")
    boards.refresh(database, lb, now_ms=now_ms(), margin_ms=0)
    expected = lb.top(board, 1000)
    assert len(expected) == members

    stop = threading.Event()
    seen: list[int] = []
    wrong: list[object] = []

    def read() -> None:
        reader = boards.Boards(redis_client)
        while not stop.is_set():
            got = reader.top(board, 1000)
            seen.append(len(got))
            if got != expected:
                wrong.append(got[:3])

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for _ in range(5):
            boards.refresh(database, lb, now_ms=now_ms(), margin_ms=0)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert seen and not wrong


def test_the_sweep_finds_a_confirmed_order_whose_sync_was_lost(database, shop, lb) -> None:  # type: ignore[no-untyped-def]
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    lost, synced = (_place(database, shop, customer, {"SKU1": 1}) for _ in range(2))
    for order_id in (lost, synced):
        _confirm(database, order_id)
    loyalty.sync_order(database, lb, synced, RULES)
    now = now_ms()

    assert set(loyalty.unsynced(database, since_ms=now - 60_000, until_ms=now + 1, limit=100)) == {lost}
    assert loyalty.unsynced(database, since_ms=now - 60_000, until_ms=now - 30_000, limit=100) == []
    loyalty.sync_order(database, lb, lost, RULES)
    assert loyalty.unsynced(database, since_ms=now - 60_000, until_ms=now + 1, limit=100) == []


def test_entries_applied_while_refreshes_run_end_up_counted_exactly_once(database, redis_client, lb) -> None:  # type: ignore[no-untyped-def]
    store, city = f"store-{uuid.uuid4().hex[:8]}", f"city-{uuid.uuid4().hex[:8]}"
    entries = _entries(store, city, 30, 300, seed=11)
    for entry in entries[:100]:
        ledger.record(database, lb, entry)
    done = threading.Event()

    def refreshes() -> None:
        # With a margin, as in production: an entry's insert lands within it, so the rebuild reads it or
        # it is newer than the watermark and kept from :recent.
        while not done.is_set():
            boards.refresh(database, lb, now_ms=now_ms(), margin_ms=1000)

    refresher = threading.Thread(target=refreshes)
    refresher.start()
    try:
        for entry in entries[100:]:  # written while the refreshes run
            ledger.record(database, lb, {**entry, "created_at_ms": now_ms()})
    finally:
        done.set()
        refresher.join()
    live = _snapshot(redis_client, store, city)

    for k in live:
        redis_client.delete(k, f"{k}:built", f"{k}:recent")
    boards.refresh(database, lb, now_ms=now_ms() + 1, margin_ms=0)
    assert _snapshot(redis_client, store, city) == live
