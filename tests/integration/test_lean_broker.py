"""The per-message savings of tasks/broker.py, tasks/base.py and tasks/reliability.py, against a real Redis."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import uuid

from kirana import redis_conn
from tasks import broker
from tasks.app import app
from tasks.base import KiranaTask, _count_delivery
from tasks.reliability import enqueue_many


def test_a_first_delivery_costs_no_round_trip_and_redeliveries_count_from_two(redis_client) -> None:  # type: ignore[no-untyped-def]
    task_id = uuid.uuid4().hex
    key = f"kirana:deliveries:{task_id}:0"

    assert _count_delivery(task_id, 0, redelivered=False) == 1
    assert redis_client.get(key) is None
    assert [_count_delivery(task_id, 0, redelivered=True) for _ in range(3)] == [2, 3, 4]
    # The key holds every delivery, the first included, for whoever inspects it (the chaos suite does).
    assert int(redis_client.get(key)) == 4
    assert 0 < redis_client.ttl(key) <= 86_400
    # A retry is a new message with a count of its own.
    assert _count_delivery(task_id, 1, redelivered=True) == 2


def test_the_channel_keeps_its_client_until_its_pool_is_replaced(redis_server) -> None:  # type: ignore[no-untyped-def]
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        assert channel._create_client(asynchronous=True) is not first
        channel._pool = None  # what kombu does after a connection error
        again = channel._create_client()
        assert again is not first and again.connection_pool is channel.pool
        assert again.ping()


def test_enqueue_many_publishes_every_message_with_its_sent_stamp(redis_server) -> None:  # type: ignore[no-untyped-def]
    name = f"backups.probe_{uuid.uuid4().hex[:8]}"

    @app.task(name=name, base=KiranaTask)
    def probe(n: int) -> None:
        return None

    assert enqueue_many(probe, [(i,) for i in range(25)], batch_size=10) == "enqueued"

    r = redis_conn.client()
    raw = [m for m in r.lrange("backups", 0, -1) if json.loads(m)["headers"]["task"] == name]
    for m in raw:
        r.lrem("backups", 1, m)  # no backups worker should meet a task it does not know
    mine = [json.loads(m) for m in raw]
    assert sorted(json.loads(base64.b64decode(m["body"]))[0][0] for m in mine) == list(range(25))
    assert all("kirana_sent_at" in m["headers"] for m in mine)


def test_a_message_given_back_by_a_lost_worker_arrives_marked_redelivered(redis_server) -> None:  # type: ignore[no-untyped-def]
    """What the redelivery cap reads: kombu marks a requeued message, and Celery passes the mark to the task."""
    from celery.worker.request import Request
    from kombu import Exchange, Queue

    name = f"sync.probe_{uuid.uuid4().hex[:8]}"

    @app.task(name=name, base=KiranaTask)
    def probe(n: int) -> None:
        return None

    # A queue of this test's own, so no worker of another test's stack takes the message.
    queue = Queue(f"probe-{uuid.uuid4().hex[:8]}", Exchange("probe", type="direct"), routing_key="probe")
    got: list = []
    with app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
        probe.apply_async(args=[1], exchange=queue.exchange, routing_key="probe")
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)], accept=["json"]):
            conn.drain_events(timeout=5)
            first = got.pop()
            assert not Request(first, app=app).delivery_info.get("redelivered")
            first.reject(requeue=True)  # what task_reject_on_worker_lost does when the child dies
            conn.drain_events(timeout=5)
            again = got.pop()
            assert Request(again, app=app).delivery_info["redelivered"] is True
            again.ack()


def test_a_pipelined_publish_that_fails_at_its_flush_goes_to_the_outbox(monkeypatch, redis_server,  # type: ignore[no-untyped-def]
                                                                          mongo_server) -> None:
    """Redis dropping the connection as the batch is sent: delivery unknown, so the outbox sends it again."""
    import redis.client

    from kirana import db, outbox
    from tasks.reliability import enqueue

    name = f"analytics.probe_{uuid.uuid4().hex[:8]}"

    @app.task(name=name, base=KiranaTask)
    def probe(n: int) -> None:
        return None

    def connection_lost(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    # Once, so the queue is declared (kombu remembers it) and the failure meets the flush itself.
    assert enqueue(probe, [6]) == "enqueued"
    r = redis_conn.client()
    for m in r.lrange("analytics", 0, -1):
        if json.loads(m)["headers"]["task"] == name:
            r.lrem("analytics", 1, m)
    monkeypatch.setattr(redis.client.Pipeline, "execute", connection_lost)
    assert enqueue(probe, [7]) == "outbox"
    assert enqueue_many(probe, [(8,), (9,)]) == "outbox"
    monkeypatch.undo()

    entries = [e for e in outbox.due(db.database(), limit=1000) if e["task"] == name]
    assert sorted(e["args"][0] for e in entries) == [7, 8, 9]
    assert all(e["reason"].startswith("broker_unavailable") for e in entries)
    db.database()[outbox.OUTBOX].delete_many({"task": name})


def test_the_consumer_flushes_task_events_once_per_interval_and_recovers_a_lost_timer() -> None:
    """Several tasks' events in one flush; a timer dropped by a consumer restart does not stop them."""
    import time

    class Hub:
        def __init__(self) -> None:
            self.timers: list[object] = []

        def call_later(self, delay: float, callback: object) -> None:
            self.timers.append(callback)

    consumer = broker.Consumer.__new__(broker.Consumer)  # only the event-flush logic is exercised
    consumer.hub = Hub()
    flushed: list[int] = []
    consumer._flush_events = lambda: flushed.append(1)  # type: ignore[method-assign]

    for _ in range(5):
        consumer.on_send_event_buffered()
    assert len(consumer.hub.timers) == 1
    consumer.hub.timers.pop()()  # the timer fires
    assert flushed == [1]

    consumer.on_send_event_buffered()
    consumer.hub.timers.clear()  # a restart drops the timer
    consumer._event_flush_at = time.monotonic() - broker.STALE_FLUSH_S - 1
    consumer.on_send_event_buffered()
    assert len(consumer.hub.timers) == 1


def _probe_queue():  # type: ignore[no-untyped-def]
    from kombu import Exchange, Queue

    name = f"probe-{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _take_on_the_wire(conn, queue, body: dict, tag: str):  # type: ignore[no-untyped-def]
    """A consumer of `queue` on `conn` whose BLMOVE has taken `body` (published now) and whose reply is unread."""
    import time

    from tasks.queues import inflight_key

    channel = conn.default_channel
    queue(channel).declare()
    channel.basic_consume(queue.name, False, lambda message: None, tag)
    channel.client.connection = channel.client.connection_pool.get_connection()  # what kombu's poller does
    channel._brpop_start(timeout=5)  # the take is on the wire...
    with app.connection_for_write() as other, other.Producer() as producer:
        producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key, serializer="json")
    inflight = inflight_key(queue.name, channel.consumer_id)
    r = redis_conn.client()
    deadline = time.monotonic() + 5
    while r.llen(inflight) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return channel, inflight


def test_a_taken_message_is_in_the_inflight_list_until_the_unacked_write_moves_it(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Queue, in-flight list or unacked hash: a message is always in one of them, never in none."""
    from tasks.queues import inflight_key

    queue = _probe_queue()
    r = redis_conn.client()
    got: list = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        queue(channel).declare()
        with conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key=queue.routing_key, serializer="json")
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append((body, message))], accept=["json"]):
            conn.drain_events(timeout=5)
            body, message = got.pop()
            assert body == {"n": 1}
            inflight = inflight_key(queue.name, channel.consumer_id)
            assert r.llen(queue.name) == 0
            assert r.llen(inflight) == 0  # removed by the unacked write...
            assert r.hexists(channel.qos.unacked_key, message.delivery_tag)  # ...which holds it now
            message.ack()
            assert not r.hexists(channel.qos.unacked_key, message.delivery_tag)


def test_a_message_taken_by_a_consumer_that_dies_at_once_goes_back_when_its_lease_lapses(redis_server) -> None:  # type: ignore[no-untyped-def]
    """kombu's BRPOP window: taken off the queue, the taker gone before writing it down.

    With BRPOP the message would be in no list and no hash (lost); here it waits
    in the dead consumer's in-flight list until a live consumer of the queue
    sees the lease lapse and moves it back.
    """
    from tasks.queues import INFLIGHT_LEASE_S, inflight_consumers_key, inflight_lease_key

    queue = _probe_queue()
    r = redis_conn.client()
    with app.connection_for_write() as dying:
        channel, inflight = _take_on_the_wire(dying, queue, {"n": 2}, "dying")
        channel.client.connection.disconnect()  # ...and the consumer dies before it reads the reply
        dead = channel.consumer_id
    assert r.llen(queue.name) == 0 and r.llen(inflight) == 1
    assert 0 < r.pttl(inflight_lease_key(queue.name, dead)) <= INFLIGHT_LEASE_S * 1000

    got: list = []
    with app.connection_for_write() as conn:
        live = conn.default_channel
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append((body, message))], accept=["json"]):
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=1)
            assert got == []
            assert live.tend_inflight() == 0  # the lease still runs: the taker may only be slow
            r.delete(inflight_lease_key(queue.name, dead))  # what PX does INFLIGHT_LEASE_S after the death
            assert live.tend_inflight() == 1
            assert r.llen(inflight) == 0 and dead.encode() not in r.smembers(inflight_consumers_key(queue.name))
            conn.drain_events(timeout=5)
            body, message = got.pop()
            assert body == {"n": 2}
            message.ack()


def test_a_take_whose_reply_a_broken_connection_lost_goes_back_at_the_next_tick(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The consumer lives on (kombu may keep the channel across a reconnect): it gives back its own list."""
    import pytest
    import redis

    queue = _probe_queue()
    r = redis_conn.client()
    with app.connection_for_write() as conn:
        channel, inflight = _take_on_the_wire(conn, queue, {"n": 3}, "broken")
        assert channel.tend_inflight() == 0  # the take is on the wire: its list is not orphaned
        channel.client.connection._sock.close()  # the connection breaks with the reply unread
        with pytest.raises((redis.exceptions.ConnectionError, OSError)):
            channel._brpop_read()
        assert r.llen(inflight) == 1
        assert channel.tend_inflight() == 1
        assert r.llen(inflight) == 0 and r.llen(queue.name) == 1
        r.delete(queue.name)
