"""Kombu's Redis transport and Celery's worker consumer, with two per-message costs taken out.

Measured with py-spy on a draining orders worker and an enqueue loop
(python -m bench.engine; README "Performance"):

- kombu builds a new `redis.Redis` object for every publish, ack and
  restore (`Channel.conn_or_acquire`), ~65–170 µs each. The channel's
  synchronous client is kept instead; it is bound to the channel's
  connection pool (thread-safe) and rebuilt when kombu replaces that pool
  after a connection error. The asynchronous client of the worker's
  BRPOP is left as kombu has it.
- The worker's consumer publishes its buffered task events (received,
  started, succeeded: Flower and celery-exporter read them) on every turn of
  its event loop: about one Redis PUBLISH round trip per event, a quarter of
  the worker's main-process time. They are now flushed at most every
  EVENT_FLUSH_S (and when kombu's buffer of 24 fills, and at shutdown), so
  several tasks' events go in one message. Monitoring sees them at most
  that much later; no task's delivery or acknowledgement depends on them.

And one hole closed: kombu takes a message with BRPOP and only then writes
it to the unacked hash. A worker that dies (or freezes, or loses its
connection) between the two loses the message for good: it is in no list
and no hash, and only beat's stuck-order sweep finds the order. Here a
worker of one queue takes with BLMOVE into an in-flight list of its own, and
the unacked write removes it from that list in the same MULTI, so a message
is always in the queue, an in-flight list or the unacked hash. A worker
holds a lease on its list (INFLIGHT_LEASE_S, renewed at every restore tick);
any live worker of the queue moves a lapsed list back onto the queue. No
round trip is added per message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from queue import Empty
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.exceptions import DecodeError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from tasks.queues import INFLIGHT_LEASE_S, inflight_consumers_key, inflight_key, inflight_lease_key

log = logging.getLogger(__name__)

EVENT_FLUSH_S = 0.05
STALE_FLUSH_S = 1.0


# At most this many messages moved back from lapsed in-flight lists per restore tick.
RESCUE_PER_TICK = 200


@dataclass(frozen=True)
class Taking:
    """A message moved into an in-flight list and not yet written to the unacked hash."""

    inflight: str
    raw: bytes


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        taking: Taking | None = self.channel._taking
        if taking is None:
            super().append(message, delivery_tag)
            return
        self.channel._taking = None
        delivery = message.delivery_info
        # kombu's own unacked write, with the message's removal from the in-flight list in the same
        # MULTI: it is in exactly one of the two whatever happens to this process.
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}) \
                .hset(self.unacked_key, delivery_tag, dumps([message._raw, delivery["exchange"],
                                                             delivery["routing_key"]])) \
                .lrem(taking.inflight, 1, taking.raw) \
                .execute()
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        super().restore_visible(start, num, interval)
        self.channel.tend_inflight()


class Channel(kombu_redis.Channel):
    QoS = QoS
    _kept_client: Any = None
    # The queue of the BLMOVE on the wire (None: kombu's own BRPOP is).
    _moving_from: str | None = None
    _taking: Taking | None = None

    @cached_property
    def consumer_id(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @cached_property
    def _leased(self) -> set[str]:
        return set()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._kept_client
        if client is None or client.connection_pool is not self.pool:
            client = self._kept_client = super()._create_client(asynchronous=False)
        return client

    def _reliable(self) -> bool:
        return len(self.active_queues) == 1 and not self.global_keyprefix and list(self.priority_steps) == [0]

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self._reliable():
            self._moving_from = None
            super()._brpop_start(timeout)
            return
        queues = self._queue_cycle.consume(1)
        if not queues:
            return
        queue = queues[0]
        if queue not in self._leased:
            self._lease(queue)
        self._moving_from = queue
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self.client.connection.send_command("BLMOVE", queue, inflight_key(queue, self.consumer_id), "RIGHT",
                                            "LEFT", timeout if timeout is not None else self.brpop_timeout or 0)

    def _brpop_read(self, **options: Any) -> bool:
        queue = self._moving_from
        if queue is None:
            return bool(super()._brpop_read(**options))
        try:
            try:
                raw = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if raw is None:
                raise Empty()
            self._deliver_taken(queue, raw)
            return True
        finally:
            self._in_poll = None
            self._moving_from = None
            self._flush_brpop_reauth()

    def _deliver_taken(self, queue: str, raw: bytes) -> None:
        inflight = inflight_key(queue, self.consumer_id)
        try:
            message = loads(raw.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            # kombu drops what it cannot decode; so do we, rather than rescue it forever.
            log.error("dropped an undecodable message from %s: %r", queue, raw[:200])
            with self.conn_or_acquire() as client:
                client.lrem(inflight, 1, raw)
            raise DecodeError(str(exc)) from exc
        self._taking = Taking(inflight, raw)
        try:
            self.connection._deliver(message, queue)
        finally:
            if self._taking is not None:
                # Never reached the unacked hash (delivery raised first): give it back now. If Redis
                # is gone too, the list keeps it and the lease rescue gives it back later.
                self._taking = None
                with contextlib.suppress(*self.connection_errors), self.conn_or_acquire() as client:
                    client.pipeline().lrem(inflight, 1, raw).rpush(queue, raw).execute()

    def _lease(self, queue: str) -> None:
        with self.conn_or_acquire() as client:
            client.pipeline().sadd(inflight_consumers_key(queue), self.consumer_id) \
                .set(inflight_lease_key(queue, self.consumer_id), 1, px=INFLIGHT_LEASE_S * 1000).execute()
        self._leased.add(queue)

    def tend_inflight(self) -> int:
        """Renew this worker's leases; move lapsed in-flight lists of its queues back. Returns how many.

        Its own list too, when no take is on the wire: whatever is there then was taken on a
        connection that broke before the reply was read (kombu may keep the channel across it).
        """
        if not self._leased:
            return 0
        queues = sorted(self._leased)
        idle = not self._in_poll and self._taking is None
        moved = 0
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                # Again every tick: a rescuer that found this list empty and lapsed (a long freeze) forgot it.
                pipe.sadd(inflight_consumers_key(queue), self.consumer_id)
                pipe.set(inflight_lease_key(queue, self.consumer_id), 1, px=INFLIGHT_LEASE_S * 1000)
                pipe.smembers(inflight_consumers_key(queue))
                pipe.llen(inflight_key(queue, self.consumer_id))
            replies = pipe.execute()
            for i, queue in enumerate(queues):
                members, own = replies[4 * i + 2], replies[4 * i + 3]
                if own and idle:
                    moved += self._rescue(client, queue, self.consumer_id, RESCUE_PER_TICK, forget=False)
                others = sorted(m.decode() for m in members if m.decode() != self.consumer_id)
                if not others:
                    continue
                alive = client.pipeline(transaction=False)
                for other in others:
                    alive.exists(inflight_lease_key(queue, other))
                for other, live in zip(others, alive.execute(), strict=True):
                    if not live and moved < RESCUE_PER_TICK:
                        moved += self._rescue(client, queue, other, RESCUE_PER_TICK - moved, forget=True)
        return moved

    @staticmethod
    def _rescue(client: Any, queue: str, consumer: str, limit: int, *, forget: bool) -> int:
        """Move `consumer`'s in-flight messages back onto `queue`; `forget` a lapsed consumer once empty."""
        source = inflight_key(queue, consumer)
        moved = 0
        while moved < limit:
            # Onto the end workers take from: what a dead worker had taken goes out next.
            if client.lmove(source, queue, "RIGHT", "RIGHT") is None:
                if forget:
                    client.srem(inflight_consumers_key(queue), consumer)
                break
            moved += 1
        if moved:
            log.warning("moved %d message(s) of %s back from the in-flight list of %s", moved, queue, consumer)
        return moved


class Transport(kombu_redis.Transport):
    Channel = Channel


# For `broker_transport` (tasks/app.py): the URL still says redis://; kombu takes the class from here.
TRANSPORT = f"{__name__}:Transport"


class Consumer(CeleryConsumer):
    # When the scheduled flush is due (monotonic seconds); 0 when none is scheduled.
    _event_flush_at = 0.0

    def on_send_event_buffered(self) -> None:
        if not self.hub:
            return
        now = time.monotonic()
        # A flush scheduled long ago whose timer was dropped (the consumer restarting after a
        # broker outage clears its timers) must not stop events for good: schedule again.
        if self._event_flush_at and now < self._event_flush_at + STALE_FLUSH_S:
            return
        self._event_flush_at = now + EVENT_FLUSH_S
        self.hub.call_later(EVENT_FLUSH_S, self._flush_due_events)

    def _flush_due_events(self) -> None:
        self._event_flush_at = 0.0
        self._flush_events()

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):  # monitoring only; never block a shutdown on it
            self._flush_events()
        super().shutdown()


CONSUMER = f"{__name__}:Consumer"
