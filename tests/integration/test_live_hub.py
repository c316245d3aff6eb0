"""kirana.live.Hub against a real Redis: fan-out by order, bounded queues, resubscription."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from kirana.config import settings
from kirana.live import CHANNEL_PREFIX, Hub, Item, Resync, Subscription, Update, Wake, hub_client, parse
from stack import servers


def _order() -> str:
    return f"ord_test_{uuid.uuid4().hex[:12]}"


def _publish(r: redis.Redis, order_id: str, message: dict[str, object] | str) -> None:
    r.publish(f"{CHANNEL_PREFIX}{order_id}", message if isinstance(message, str) else json.dumps(message))


def _next(sub: Subscription, timeout: float = 5.0) -> Item:
    """The next item that is not a Wake."""
    while True:
        item = sub.get(timeout=timeout)
        if not isinstance(item, Wake):
            return item


def _update(sub: Subscription, timeout: float = 5.0) -> Update:
    item = _next(sub, timeout)
    assert isinstance(item, Update), item
    return item


@pytest.fixture
def hub(redis_server: str) -> Iterator[Hub]:
    started = Hub(queue_size=8)
    started.start(hub_client(settings().redis_url, connect_timeout_s=2.0, name=f"hub-test-{uuid.uuid4().hex[:8]}"))
    assert started.wait_ready(5), "the hub did not subscribe within 5s"
    yield started
    started.stop()


def test_parse_adds_the_status_type_and_keeps_typed_messages_verbatim() -> None:
    status = parse("o1", '{"order_id":"o1","status":"processing","at_ms":5}')
    typed = parse("o1", '{"type": "location",  "lat": 12.97}')

    assert status is not None and typed is not None
    assert status.message == {"type": "status", "order_id": "o1", "status": "processing", "at_ms": 5}
    assert json.loads(status.text) == status.message
    assert typed.text == '{"type": "location",  "lat": 12.97}'
    assert parse("o1", "not json") is None
    assert parse("o1", "[1, 2]") is None


def test_a_status_reaches_every_watcher_of_its_order_and_no_other(hub: Hub, redis_client: redis.Redis) -> None:
    order, other = _order(), _order()
    first, second, elsewhere = hub.subscribe(order), hub.subscribe(order), hub.subscribe(other)

    _publish(redis_client, order, {"order_id": order, "status": "processing", "at_ms": 1})
    _publish(redis_client, other, {"type": "marker"})

    for sub in (first, second):
        update = _update(sub)
        assert update.order_id == order
        assert update.message == {"type": "status", "order_id": order, "status": "processing", "at_ms": 1}
    assert _update(elsewhere).message == {"type": "marker"}, "the other order's watcher got this order's update"
    assert hub.watchers(order) == 2


def test_garbage_on_a_channel_is_skipped_and_what_follows_arrives(hub: Hub, redis_client: redis.Redis) -> None:
    order = _order()
    sub = hub.subscribe(order)

    _publish(redis_client, order, "not json")
    _publish(redis_client, order, "[1, 2]")
    _publish(redis_client, order, '{"type":"location","lat":12.97,"lng":77.64}')

    assert _update(sub).text == '{"type":"location","lat":12.97,"lng":77.64}'


def test_a_watcher_that_does_not_read_is_dropped_and_the_others_get_everything(
        hub: Hub, redis_client: redis.Redis) -> None:
    order = _order()
    slow, fast = hub.subscribe(order), hub.subscribe(order)
    aborted = threading.Event()
    slow.on_drop = aborted.set
    got: list[int] = []

    def read() -> None:
        while len(got) < 50:
            got.append(_update(fast).message["seq"])

    reader = threading.Thread(target=read)
    reader.start()
    for seq in range(50):
        _publish(redis_client, order, {"type": "tick", "seq": seq})
        # In step with the reader that keeps up (a loaded machine must not make it fall
        # 8 behind too); the one that never reads still overflows after 8.
        deadline = time.monotonic() + 5
        while len(got) <= seq and time.monotonic() < deadline:
            time.sleep(0.001)
    reader.join(10)

    assert got == list(range(50))
    assert aborted.wait(5) and slow.dropped
    assert hub.watchers(order) == 1, "the dropped watcher is still registered"
    assert slow.qsize() == 8, "nothing more is queued for a dropped watcher"


def test_unsubscribe_stops_delivery(hub: Hub, redis_client: redis.Redis) -> None:
    order = _order()
    gone, staying = hub.subscribe(order), hub.subscribe(order)

    hub.unsubscribe(gone)
    _publish(redis_client, order, {"type": "tick"})

    assert _update(staying).message == {"type": "tick"}
    assert gone.empty()
    hub.unsubscribe(gone)  # twice is harmless
    hub.unsubscribe(staying)
    assert hub.watchers(order) == 0


def test_a_lost_subscription_comes_back_and_every_watcher_is_told_to_resync(redis_client: redis.Redis) -> None:
    name = f"hub-test-{uuid.uuid4().hex[:8]}"
    hub = Hub()
    hub.start(hub_client(settings().redis_url, connect_timeout_s=2.0, name=name))
    try:
        assert hub.wait_ready(5)
        order = _order()
        sub = hub.subscribe(order)
        before = hub.generation

        [ours] = [c for c in redis_client.client_list() if c["name"] == name]
        redis_client.client_kill_filter(_id=ours["id"])

        resync = _next(sub)
        assert isinstance(resync, Resync) and resync.generation > before
        assert hub.wait_ready(5)
        _publish(redis_client, order, {"type": "tick"})
        assert _update(sub).message == {"type": "tick"}
        assert hub.reconnects >= 1
    finally:
        hub.stop()


def test_the_hub_keeps_trying_an_unreachable_redis_and_stops_cleanly() -> None:
    hub = Hub(backoff_max_s=0.2)
    thread = hub.start(hub_client(f"redis://127.0.0.1:{servers.free_port()}/0", connect_timeout_s=0.2))
    sub = hub.subscribe(_order())

    assert not hub.wait_ready(1.0)
    deadline = time.monotonic() + 5
    while hub.reconnects < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    hub.stop()

    assert hub.reconnects >= 2
    assert not thread.is_alive()
    with pytest.raises(queue.Empty):
        sub.get_nowait()
