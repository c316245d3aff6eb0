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
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis

EVENT_FLUSH_S = 0.05
STALE_FLUSH_S = 1.0


class Channel(kombu_redis.Channel):
    _kept_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._kept_client
        if client is None or client.connection_pool is not self.pool:
            client = self._kept_client = super()._create_client(asynchronous=False)
        return client


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
