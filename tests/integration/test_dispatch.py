"""The dispatcher: follow-ups recorded with a move become messages under fixed ids, once, against real
Redis (the broker) and the real MongoDB wire protocol."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
import redis

from kirana import db, orders, outbox
from kirana.clock import now_ms
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status

pytestmark = pytest.mark.usefixtures("redis_server")


@pytest.fixture
def dispatch(monkeypatch, database, redis_server):  # type: ignore[no-untyped-def]
    from tasks import dispatch as dispatcher

    # The tasks' own MongoDB access reads this test's database.
    monkeypatch.setattr(db, "database", lambda cfg=None: database)
    yield dispatcher
    # The messages are this test's alone: no worker of a later test may run them.
    r = redis.Redis.from_url(redis_server)
    for key in r.scan_iter(count=1000):
        if r.type(key) == b"list":
            for raw in r.lrange(key, 0, -1):
                if b"cust-d" in raw or any(o["_id"].encode() in raw for o in database["orders"].find({}, {"_id": 1})):
                    r.lrem(key, 0, raw)


def _messages(redis_url: str, order_id: str) -> list[tuple[str, str]]:
    """(task name, task id) of every message waiting in the broker for `order_id`."""
    r = redis.Redis.from_url(redis_url)
    found = []
    for key in r.scan_iter(count=1000):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            headers: dict[str, Any] = json.loads(raw).get("headers", {})
            if order_id in str(headers.get("id", "")):
                found.append((headers["task"], headers["id"]))
    return sorted(found)


def _placed(database, method: PaymentMethod = PaymentMethod.COD) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return orders.place(database, NewOrder("cust-d", "store-d", (OrderItem("ATTA", 1),), method))[0]


def test_placing_records_the_orders_processing_and_notification_with_it(database) -> None:  # type: ignore[no-untyped-def]
    order = _placed(database)

    stored = database["orders"].find_one({"_id": order["_id"]})

    assert {name: (i["task"], i["args"]) for name, i in stored["intents"].items()} == {
        "process": ("orders.process", [order["_id"]]),
        "notify-order_accepted": ("notifications.order_event", [order["_id"], "order_accepted", {}]),
        "live-accepted": ("live.order_update", [order["_id"], "accepted", order["created_at_ms"]]),
    }
    assert stored["intents_at_ms"] == stored["created_at_ms"]


def test_the_dispatcher_sends_each_follow_up_under_its_fixed_id_then_forgets_them(dispatch, database,
                                                                                    redis_server) -> None:  # type: ignore[no-untyped-def]
    order = _placed(database)
    orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)
    confirmed = orders.move(database, order["_id"], Status.PROCESSING, Status.CONFIRMED)

    with contextlib.closing(redis.Redis.from_url(redis_server).pubsub()) as live:
        live.subscribe(f"kirana:order:{order['_id']}")
        live.get_message(timeout=1)  # the subscription's own confirmation

        assert dispatch.send(confirmed) == 8

        heard = [json.loads(m["data"])["status"] for m in iter(lambda: live.get_message(timeout=1), None)]
    assert heard == ["accepted", "processing", "confirmed"], "each move's live update, in the order of the moves"

    oid = order["_id"]
    assert _messages(redis_server, oid) == sorted([
        ("orders.process", f"{oid}:process"),
        ("notifications.order_event", f"{oid}:notify-order_accepted"),
        ("leaderboards.sync_order", f"{oid}:loyalty-confirmed"),
        ("notifications.order_event", f"{oid}:notify-order_confirmed"),
    ])
    # The search follow-up asks for one coalesced indexer run: its "one is on its way" flag is set.
    from tasks import search as search_tasks
    assert redis.Redis.from_url(redis_server).exists(search_tasks._pending_key())
    stored = database["orders"].find_one({"_id": oid})
    assert stored["intents"] == {} and "intents_at_ms" not in stored
    assert dispatch.send_for(database, oid) == 0, "nothing is left to send"


def test_what_a_run_that_died_after_its_write_left_is_sent_by_the_sweep_once(dispatch, database,
                                                                               redis_server) -> None:  # type: ignore[no-untyped-def]
    order = _placed(database, PaymentMethod.UPI)
    orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)
    # As if the run had died between its move and the dispatch: the intents stay recorded.
    orders.move(database, order["_id"], Status.PROCESSING, Status.RESERVED, fields={"payment_attempt": 1}, attempt=1)
    assert order["_id"] not in [o["_id"] for o in orders.with_unsent_intents(database, now_ms() - 5_000, 1000)]
    # DISPATCH_SWEEP_S later.
    database["orders"].update_one({"_id": order["_id"]}, {"$set": {"intents_at_ms": now_ms() - 60_000}})

    assert dispatch.sweep_once() >= 1
    assert dispatch.sweep_once() == 0

    oid = order["_id"]
    assert ("payments.create_order", f"{oid}:gateway_order-1") in _messages(redis_server, oid)
    assert [m for m in _messages(redis_server, oid) if m[1] == f"{oid}:gateway_order-1"] == [
        ("payments.create_order", f"{oid}:gateway_order-1")]
    assert "intents_at_ms" not in database["orders"].find_one({"_id": oid})


def test_a_newer_move_between_the_read_and_the_mark_keeps_its_own_follow_ups(dispatch, database) -> None:  # type: ignore[no-untyped-def]
    order = _placed(database)
    claimed = orders.move(database, order["_id"], Status.ACCEPTED, Status.PROCESSING)
    # Read by one dispatcher; meanwhile the order moves on and records follow-ups of its own.
    orders.move(database, order["_id"], Status.PROCESSING, Status.REJECTED, detail={"reason": "out_of_stock"})

    orders.intents_sent(database, claimed, list(claimed["intents"]))

    stored = database["orders"].find_one({"_id": order["_id"]})
    assert set(stored["intents"]) == {"loyalty-rejected", "search-rejected", "notify-order_rejected", "live-rejected"}
    assert stored["intents"]["notify-order_rejected"]["args"][2] == {"reason": "out_of_stock"}
    assert "intents_at_ms" in stored, "the sweep still finds what the newer move left"


def test_a_follow_up_parked_in_the_outbox_is_relayed_under_its_fixed_id(dispatch, database,
                                                                          redis_server) -> None:  # type: ignore[no-untyped-def]
    from tasks import outbox_relay

    order = _placed(database)
    # What enqueue_intents parks when the broker is down.
    outbox.add(database, "orders.process", [order["_id"]], task_id=f"{order['_id']}:process")

    assert outbox_relay.relay_once() >= 1

    assert _messages(redis_server, order["_id"]) == [("orders.process", f"{order['_id']}:process")]
