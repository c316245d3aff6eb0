"""Live order updates: ONE Redis subscriber per process, fanned out to many sockets.

Every status change is published on `kirana:order:<id>` (tasks.base.publish_order_update).
A process that serves WebSockets runs a single pattern subscription,
`psubscribe("kirana:order:*")`, in a `Hub`, and hands each message to the
small bounded queue of every socket watching that order:

    hub = Hub()
    hub.start(redis_client)            # a daemon thread (a greenlet under gevent)
    sub = hub.subscribe(order_id)      # a queue of Update | Resync
    item = sub.get(timeout=5)
    hub.unsubscribe(sub)

Why one subscriber and not one per socket: a thousand sockets would be a
thousand Redis connections, and Redis would send every message a thousand
times. Why bounded queues: the subscriber must never wait for a socket, so a
client that does not read (or reads too slowly) fills its own queue and is
dropped (`Subscription.on_drop` lets its owner abort the socket); it
reconnects and gets the current state.

The same subscription also takes `kirana:user:*` (a user's own messages: offline
sync results, published by tasks.sync), handed to the sockets watching the key
`user:<user id>` (api/live.py's /ws/sync).

Messages are lost while the subscription is down (Redis restarts, the
network drops). Every time the subscription is (re)established the hub puts
a `Resync` into every queue, so the sockets re-read the order: a client never
misses a final state because of an outage.

Free of Flask and of gevent: it uses threading and queue only, which gevent's
monkey patching makes cooperative in the gevent worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "kirana:order:"
PATTERN = f"{CHANNEL_PREFIX}*"
# A user's own messages (offline sync results, tasks.sync): watched under the key `user:<user id>`.
USER_PREFIX = "kirana:user:"
USER_PATTERN = f"{USER_PREFIX}*"
# Per socket: order status changes come a few at a time, so 64 queued means the client is not reading.
QUEUE_SIZE = 64
# An idle subscription is pinged this often; no answer (not even a pong) for two rounds means a dead connection.
PING_INTERVAL_S = 15.0
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
# Connected at least this long before it dropped: the next attempt starts again from the shortest backoff.
STABLE_AFTER_S = 10.0
_PING_TOKEN = "kirana-live-hub"


@dataclass(frozen=True)
class Update:
    """One published message, parsed once for all the sockets of its order."""

    order_id: str
    # The message with its "type" ("status" when the publisher gave none).
    message: dict[str, Any]
    # What goes on the wire: the published text itself when it had a type, else `message` as JSON.
    text: str


@dataclass(frozen=True)
class Resync:
    """The subscription was (re)established: anything published before may have been missed."""

    generation: int


@dataclass(frozen=True)
class Wake:
    """Nothing to send: the socket's owner should look at its socket (the client closed it, say)."""


Item = Update | Resync | Wake


class Subscription(queue.Queue[Item]):
    """One socket's bounded queue of updates for one order."""

    def __init__(self, order_id: str, maxsize: int) -> None:
        super().__init__(maxsize)
        self.order_id = order_id
        # Set by the hub when the queue overflowed; nothing more is put in it after.
        self.dropped = False
        # Called (once, from the hub's thread) when the subscription is dropped: it must not block.
        self.on_drop: Callable[[], None] | None = None

    def wake(self) -> None:
        """Wake the owner waiting on the queue; never blocks (a full queue wakes it anyway)."""
        with contextlib.suppress(queue.Full):
            self.put_nowait(Wake())


def parse(order_id: str, data: str | bytes) -> Update | None:
    """The update a published message stands for, or None if it is not a JSON object."""
    text = data.decode() if isinstance(data, bytes) else data
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if "type" in message:
        return Update(order_id, message, text)  # verbatim: a location update, say
    message = {"type": "status", **message}
    return Update(order_id, message, json.dumps(message, separators=(",", ":")))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Hub:
    """The process's one subscriber and the sockets' queues, by order id."""

    def __init__(self, *, queue_size: int = QUEUE_SIZE, ping_interval_s: float = PING_INTERVAL_S,
                 backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.queue_size = queue_size
        self.ping_interval_s = ping_interval_s
        self.backoff_max_s = backoff_max_s
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        # Set while the pattern subscription is live.
        self.ready = threading.Event()
        # Counts (re)subscriptions; a socket compares it with the one its state was read under.
        self.generation = 0
        self.delivered = 0
        self.dropped = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the sockets' side ---------------------------------------------------------------

    def subscribe(self, order_id: str) -> Subscription:
        sub = Subscription(order_id, self.queue_size)
        with self._lock:
            self._subs.setdefault(order_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            group = self._subs.get(sub.order_id)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._subs[sub.order_id]

    def watchers(self, order_id: str | None = None) -> int:
        with self._lock:
            if order_id is not None:
                return len(self._subs.get(order_id, ()))
            return sum(len(group) for group in self._subs.values())

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    # --- the subscriber's side -----------------------------------------------------------

    def dispatch(self, order_id: str, data: str | bytes) -> int:
        """Offer a published message to the order's sockets; how many took it."""
        update = parse(order_id, data)
        if update is None:
            log.warning("ignored a message on %s%s that is not a JSON object", CHANNEL_PREFIX, order_id)
            return 0
        with self._lock:
            targets = tuple(self._subs.get(order_id, ()))
        taken = sum(self._offer(sub, update) for sub in targets)
        self.delivered += taken
        return taken

    def _offer(self, sub: Subscription, item: Item) -> bool:
        try:
            sub.put_nowait(item)
            return True
        except queue.Full:
            self._drop(sub)
            return False

    def _drop(self, sub: Subscription) -> None:
        """A socket that lets its queue fill up is cut off, never waited for."""
        self.unsubscribe(sub)
        if sub.dropped:
            return
        sub.dropped = True
        self.dropped += 1
        log.info("dropped a slow watcher of order %s (%d updates unread)", sub.order_id, sub.qsize())
        if sub.on_drop is not None:
            try:
                sub.on_drop()
            except Exception:  # one socket's trouble must not stop the hub
                log.exception("on_drop of a watcher of order %s failed", sub.order_id)

    def _subscribed(self) -> None:
        """The pattern subscription is live (again): every socket re-reads its order."""
        with self._lock:
            self.generation += 1
            generation = self.generation
            everyone = [sub for group in self._subs.values() for sub in group]
        self.ready.set()
        for sub in everyone:
            self._offer(sub, Resync(generation))

    def listen(self, client: redis.Redis, stop: threading.Event) -> None:
        """One connection's life: subscribe, dispatch until `stop` or an error (raised)."""
        pubsub = client.pubsub()
        try:
            pubsub.psubscribe(PATTERN, USER_PATTERN)
            last_seen = time.monotonic()
            next_ping = last_seen + self.ping_interval_s
            while not stop.is_set():
                # A timeout, not a blocking read: `stop` is looked at every second.
                message = pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is None:
                    if now - last_seen > 2 * self.ping_interval_s:
                        raise redis.exceptions.ConnectionError("no answer from Redis to two pings")
                    if now >= next_ping:
                        # A silently dead TCP connection would otherwise look like a quiet one forever.
                        pubsub.ping(_PING_TOKEN)
                        next_ping = now + self.ping_interval_s
                    continue
                last_seen = now
                kind = message["type"]
                if kind == "pmessage":
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    key = (f"user:{channel.removeprefix(USER_PREFIX)}" if channel.startswith(USER_PREFIX)
                           else channel.removeprefix(CHANNEL_PREFIX))
                    self.dispatch(key, message["data"])
                    # Let the sockets send before the next message: with many messages already
                    # read from Redis, a gevent worker would otherwise fill every queue without
                    # ever switching, and drop fast clients along with slow ones.
                    time.sleep(0)
                elif kind == "psubscribe" and _text(message["channel"]) == PATTERN:
                    # Also seen when redis-py reconnects and re-subscribes by itself. Once per
                    # (re)subscription: the user pattern's confirmation follows the same connection.
                    self._subscribed()
        finally:
            self.ready.clear()
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                pubsub.close()

    def run(self, client: redis.Redis, stop: threading.Event | None = None) -> None:
        """Listen until `stop`, reconnecting with capped, jittered exponential backoff."""
        stop = stop or self._stop
        delay = BACKOFF_MIN_S
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.listen(client, stop)
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("live updates: Redis subscription lost (%s); reconnecting in %.1fs", exc, delay)
            except Exception:  # a hub that died would silence every socket of the process
                log.exception("live updates: the subscriber failed; restarting in %.1fs", delay)
            if stop.is_set():
                break
            self.reconnects += 1
            if time.monotonic() - started > STABLE_AFTER_S:
                delay = BACKOFF_MIN_S
            stop.wait(delay * random.uniform(0.5, 1.0))  # jitter: many processes must not reconnect in step
            delay = min(delay * 2, self.backoff_max_s)

    def start(self, client: redis.Redis) -> threading.Thread:
        """Run the subscriber in a daemon thread (a greenlet under gevent)."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(client, self._stop), name="kirana-live-hub",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def hub_client(url: str, *, connect_timeout_s: float, name: str = "kirana-live-hub") -> redis.Redis:
    """A Redis client for the hub alone.

    No retries inside redis-py: a lost connection surfaces in `Hub.run`, which
    backs off and re-subscribes itself (and tells the sockets to resync).
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=connect_timeout_s,
        # Reads wait at most get_message's 1 s; this only bounds a stuck write.
        socket_timeout=10.0, socket_keepalive=True, retry=Retry(NoBackoff(), 0),
        # Named, so that CLIENT LIST tells the hubs' subscriptions apart.
        client_name=name,
    )


# --- open sockets per user ---------------------------------------------------------------------

SOCKETS_PREFIX = "kirana:ws:sockets"

# Atomically: forget the user's sockets whose lease ran out (a ws process that died), then take a
# slot if fewer than the cap are open. KEYS[1] the user's hash; ARGV now_ms, socket id, until_ms, cap.
_TAKE_SLOT = """
local all = redis.call('HGETALL', KEYS[1])
local now, live = tonumber(ARGV[1]), 0
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) else live = live + 1 end
end
if live >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) - now)
return 1
"""


def take_socket_slot(r: redis.Redis, user_id: str, socket_id: str, *, cap: int, lease_ms: int, now_ms: int) -> bool:
    """Count one more open socket for `user_id` unless `cap` are open already (across every ws process)."""
    taken = r.eval(_TAKE_SLOT, 1, f"{SOCKETS_PREFIX}:{user_id}", now_ms, socket_id, now_ms + lease_ms, cap)
    return bool(int(taken))  # type: ignore[arg-type]


def renew_socket_slot(r: redis.Redis, user_id: str, socket_id: str, *, lease_ms: int, now_ms: int) -> None:
    """The socket is still open: its slot lives another `lease_ms` (a dead process's slots lapse)."""
    pipe = r.pipeline()
    pipe.hset(f"{SOCKETS_PREFIX}:{user_id}", socket_id, now_ms + lease_ms)
    pipe.pexpire(f"{SOCKETS_PREFIX}:{user_id}", lease_ms, gt=True)
    pipe.execute()


def release_socket_slot(r: redis.Redis, user_id: str, socket_id: str) -> None:
    r.hdel(f"{SOCKETS_PREFIX}:{user_id}", socket_id)
