"""/ws/orders/<order_id>: an order's live updates over a WebSocket (flask-sock); /ws/sync: one's sync results.

    connect  ws://host/ws/orders/ord_01...?access_token=<access token>   (or Authorization: Bearer)
    <- {"type": "state", "order": {...GET /api/v1/orders/<id>...}}        always first
    <- {"type": "status", "order_id": "...", "status": "processing", "at_ms": ...}
    <- any other message published on the order's channel, verbatim ({"type": "location", ...})
    on refusal: <- {"type": "error", "status": 401|403|404|503, "title": ..., "detail": ...}, then close
              (close code 4000 + status: 4401, 4403, 4404; 1013 when a dependency is down)

The route is declared public because a browser cannot send an Authorization
header with a WebSocket upgrade; the token is checked here, on connect, and
again every WS_REAUTH_S (a logout or an expired token ends the socket). Someone
else's order and no order at all get the same 404, as over HTTP.

The route is served by its own gunicorn process with the gevent worker
(stack.commands.ws_command): a greenlet per socket, where the API's gthread
worker would hold a thread. Fan-out is kirana.live.Hub, one per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymongo.errors
import redis.exceptions
from flask import Blueprint, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from simple_websocket import Server as WebSocket

from api.security import public
from kirana import db, live, orders, redis_conn, tokens
from kirana.clock import now_ms
from kirana.config import settings
from kirana.live import Hub, Resync, Subscription, Update, hub_client
from kirana.permissions import Principal, allowed, can_see_order, needs_two_factor

bp = Blueprint("live", __name__)
_sock = Sock()

# Server pings keep idle connections open through proxies and NATs, and a
# client that stops answering them is closed (simple-websocket: no pong by the next ping).
PING_INTERVAL_S = 20
# Clients have nothing to say; a big message is a misbehaving one.
MAX_CLIENT_MESSAGE_BYTES = 4096
# How long a new socket waits for the process's subscription to be live before reading the
# state anyway (the hub's Resync re-sends the state once it is).
READY_WAIT_S = 2.0
# How often an idle socket wakes by itself (to check the token again); a client closing or
# sending something wakes it at once (_WakingEvent).
POLL_S = 15.0


class _WakingEvent:
    """simple-websocket's event (`event_class`), which also wakes the route's wait on its queue.

    simple-websocket sets its event when the client sends a message or the connection
    closes; the route waits on the hub's queue, not on that event, so without this it
    would notice a closed socket only at its next poll.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.wake: Callable[[], None] | None = None

    def set(self) -> None:
        self._event.set()
        if self.wake is not None:
            self.wake()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


@bp.record_once
def _configure(state: Any) -> None:
    state.app.config.setdefault("SOCK_SERVER_OPTIONS", {
        "ping_interval": PING_INTERVAL_S, "max_message_size": MAX_CLIENT_MESSAGE_BYTES,
        "event_class": _WakingEvent,
    })


@bp.before_request
def _no_compression() -> None:
    """Refuse permessage-deflate (simple-websocket accepts whatever the client offers).

    Its zlib state is ~100 KB resident per socket (measured: 100 MB for a thousand sockets,
    more than everything else the server holds for them), to save a few bytes on messages
    of a few hundred: the socket count is what this server is for.
    """
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


_hub_lock = threading.Lock()
_hubs: dict[int, Hub] = {}


def process_hub() -> Hub:
    """The process's hub, started on first use (after the fork: a subscriber must not cross one)."""
    pid = os.getpid()
    with _hub_lock:
        found = _hubs.get(pid)
        if found is None:
            cfg = settings()
            found = Hub()
            found.start(hub_client(cfg.redis_url, connect_timeout_s=cfg.redis_timeout_s))
            _hubs[pid] = found
        return found


class _GuardedSocket:
    """Stands in for the WebSocket's socket (simple-websocket writes with `sock.send`).

    - whole frames: `sendall`, where a bare `send` may write part of a frame when the buffer is nearly full;
    - one writer at a time: the route and simple-websocket's ping thread both write;
    - `abort()` from another thread (the hub's, when the client is too slow): shutting the socket down
      wakes a writer blocked on a client that does not read.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._write = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._write:
            self._sock.sendall(data)
        return len(data)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _token() -> str | None:
    """The `access_token` query parameter (browsers) or the bearer token (other clients)."""
    token = request.args.get("access_token", "").strip()
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _send(ws: WebSocket, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message, separators=(",", ":")))


class Refused(Exception):
    """Tell the client why, once, then close."""

    def __init__(self, status: int, slug: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.message = {"type": "error", "status": status, "problem": f"/problems/{slug}", "title": title,
                        "detail": detail, **extra}
        # 4000 + HTTP status, so a client tells "log in again" (4401) from "no such order" (4404);
        # 1013 ("try again later") when a dependency is down.
        self.close_code = 1013 if status == 503 else 4000 + status


def _unauthorized(detail: str) -> Refused:
    return Refused(401, "unauthorized", "Unauthorized", detail)


def _unavailable(dependency: str, exc: BaseException) -> Refused:
    return Refused(503, "service-unavailable", "A service Kirana depends on is unavailable",
                   f"{dependency} did not answer ({type(exc).__name__}); reconnect later", dependency=dependency)


def _authenticate(token: str | None, permission: str = "orders:read") -> Principal:
    if token is None:
        raise _unauthorized("send an access token as ?access_token=<token> or 'Authorization: Bearer <token>'")
    try:
        principal = tokens.authenticate(db.database(), token, secret=settings().token_secret)
    except tokens.TokenError as exc:
        raise _unauthorized(str(exc)) from None
    except pymongo.errors.PyMongoError as exc:
        raise _unavailable("mongodb", exc) from exc
    if not allowed(principal, permission):
        # As api.security.enforce answers over HTTP.
        if needs_two_factor(principal):
            raise Refused(403, "two-factor-required", "Two-factor authentication required",
                          f"the {principal.role} role must enrol in two-factor and log in with a code first")
        raise Refused(403, "forbidden", "Forbidden", f"the {principal.role} role may not {permission}")
    return principal


def _may_see(principal: Principal, order_id: str) -> None:
    """Refuse (404, as over HTTP) unless `principal` may see the order now: checked before the socket
    is subscribed, and again at every re-check (a rider taken off the delivery stops getting it)."""
    try:
        order = db.database()[db.ORDERS].find_one({"_id": order_id}, {"customer_id": 1, "store_id": 1, "rider_id": 1})
    except pymongo.errors.PyMongoError as exc:
        raise _unavailable("mongodb", exc) from exc
    if order is None or not can_see_order(principal, order):
        raise Refused(404, "not-found", "Order not found", str(orders.OrderNotFound(order_id)))


class _Slot:
    """The socket's place among its user's open sockets (WS_MAX_SOCKETS_PER_USER, across processes)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.id = uuid.uuid4().hex
        # A ws process that dies leaves its slots to lapse: a few re-checks' worth.
        self.lease_ms = int(3 * settings().ws_reauth_s * 1000) + 5000
        self.taken = False

    def take(self) -> None:
        cap = settings().ws_max_sockets_per_user
        try:
            self.taken = live.take_socket_slot(redis_conn.client(), self.user_id, self.id, cap=cap,
                                               lease_ms=self.lease_ms, now_ms=now_ms())
        except redis.exceptions.RedisError as exc:
            raise _unavailable("redis", exc) from exc
        if not self.taken:
            raise Refused(429, "too-many-sockets", "Too many open sockets",
                          f"at most {cap} open sockets per user; close one first")

    def renew(self) -> None:
        with contextlib.suppress(redis.exceptions.RedisError):
            live.renew_socket_slot(redis_conn.client(), self.user_id, self.id, lease_ms=self.lease_ms,
                                   now_ms=now_ms())

    def release(self) -> None:
        if self.taken:
            with contextlib.suppress(redis.exceptions.RedisError):
                live.release_socket_slot(redis_conn.client(), self.user_id, self.id)


def _state(principal: Principal, order_id: str) -> dict[str, Any]:
    """The order as GET /api/v1/orders/<id> shows it; 404 alike for no order and someone else's.

    One read (the order and its history are one document): a status the state shows
    as an event is not sent again, so it is shown as the status too.
    """
    try:
        order, order_events = orders.with_events(db.database(), order_id)
        if not can_see_order(principal, order):
            # 404, not 403: whether someone else's order exists is not for this user to learn.
            raise orders.OrderNotFound(order_id)
        return orders.view(order, order_events)
    except orders.OrderNotFound as exc:
        raise Refused(404, "not-found", "Order not found", str(exc)) from None
    except pymongo.errors.PyMongoError as exc:
        raise _unavailable("mongodb", exc) from exc


class _Known:
    """Status messages the state already shows, to skip them (the subscription starts before the read).

    Older than the state: skipped, so a client never steps back. As old as the state but
    missing from its events (its event was written after the read): sent, it completes the story.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.updated_at_ms = int(state["updated_at_ms"])
        self.seen = {(e["status"], e["at_ms"]) for e in state["events"]}

    def stale(self, message: dict[str, Any]) -> bool:
        at_ms = message.get("at_ms")
        if message.get("type") != "status" or not isinstance(at_ms, int):
            return False
        return at_ms < self.updated_at_ms or (message.get("status"), at_ms) in self.seen


def _drain(ws: WebSocket) -> None:
    """Discard what the client sent (it has nothing to say), so it cannot pile up in memory."""
    while ws.receive(timeout=0) is not None:
        pass


def _watch(ws: WebSocket, hub: Hub, sub: Subscription, order_id: str, *, token: str | None, principal: Principal,
           slot: _Slot) -> None:
    # Subscribed (by the caller) before the read: whatever changes after the read is in the queue.
    hub.wait_ready(READY_WAIT_S)
    generation = hub.generation
    state = _state(principal, order_id)
    _send(ws, {"type": "state", "order": state})
    known = _Known(state)

    def still_allowed(checked: Principal) -> None:
        _may_see(checked, order_id)
        slot.renew()

    for item, checked in _items(ws, sub, token, "orders:read", principal=principal, recheck=still_allowed):
        if isinstance(item, Resync):
            if item.generation <= generation:
                continue  # the state sent was read under this subscription already
            # The subscription was down for a while: updates may have been missed.
            generation = item.generation
            state = _state(checked, order_id)
            _send(ws, {"type": "state", "order": state})
            known = _Known(state)
        elif not known.stale(item.message):
            ws.send(item.text)


def _items(ws: WebSocket, sub: Subscription, token: str | None, permission: str, *, principal: Principal,
           recheck: Callable[[Principal], None]) -> Iterator[tuple[Update | Resync, Principal]]:
    """The subscription's updates and resyncs, with the principal as last checked, while the socket lives.

    Between items the client's frames are drained and, every WS_REAUTH_S, its token is checked
    again and `recheck` runs (may it still see what it watches?); it ends when the hub dropped
    the subscription (too slow) or the socket closed.
    """
    reauth_s = settings().ws_reauth_s
    checked_at = time.monotonic()
    while True:
        # Wake for the next check on time, not up to a poll late.
        due_in = reauth_s - (time.monotonic() - checked_at)
        try:
            item = sub.get(timeout=max(0.05, min(POLL_S, due_in)))
        except queue.Empty:
            item = None
        if sub.dropped or not ws.connected:
            return  # too slow (the hub has aborted the socket) or gone
        _drain(ws)
        if time.monotonic() - checked_at >= reauth_s:
            try:
                principal = _authenticate(token, permission)
                recheck(principal)
            except Refused as refused:
                if refused.status != 503:  # a database blip must not disconnect everyone
                    raise
            checked_at = time.monotonic()
        if isinstance(item, Update | Resync):
            yield item, principal
        # else a Wake (or nothing): the checks above were all it was for


@_sock.route("/ws/orders/<order_id>", bp=bp)
@public
def order_updates(ws: WebSocket, order_id: str) -> None:
    guarded = _GuardedSocket(ws.sock)
    ws.sock = guarded
    hub = process_hub()
    sub: Subscription | None = None
    slot: _Slot | None = None
    try:
        # Authorised first (the token, the order), counted among its user's sockets, and only
        # then subscribed: nothing is fanned out to a socket that may not have it.
        token = _token()
        principal = _authenticate(token)
        _may_see(principal, order_id)
        slot = _Slot(principal.user_id)
        slot.take()
        sub = hub.subscribe(order_id)
        sub.on_drop = guarded.abort
        if isinstance(ws.event, _WakingEvent):
            ws.event.wake = sub.wake
        _watch(ws, hub, sub, order_id, token=token, principal=principal, slot=slot)
    except Refused as refused:
        with contextlib.suppress(ConnectionClosed, OSError):
            _send(ws, refused.message)
            ws.close(reason=refused.close_code, message=refused.message["title"])
    except OSError:
        pass  # the client went away, or was dropped as too slow: nothing to tell it
    finally:
        if sub is not None:
            hub.unsubscribe(sub)
        if slot is not None:
            slot.release()


# --- /ws/sync: the signed-in user's offline sync results ----------------------------------------


def _watch_sync(ws: WebSocket, hub: Hub, principal: Principal, token: str | None, sub: Subscription, *,
                slot: _Slot) -> None:
    hub.wait_ready(READY_WAIT_S)
    generation = hub.generation
    # From here on every result published for this user reaches the socket.
    _send(ws, {"type": "ready"})
    for item, _ in _items(ws, sub, token, "sync:submit", principal=principal, recheck=lambda _checked: slot.renew()):
        if isinstance(item, Update):
            ws.send(item.text)
        elif item.generation > generation:
            # Results may have been published while the subscription was down: read GET /api/v1/sync/<id>.
            generation = item.generation
            _send(ws, {"type": "resync"})


@_sock.route("/ws/sync", bp=bp)
@public
def sync_results(ws: WebSocket) -> None:
    """<- {"type": "ready"}, then {"type": "sync", "batch_id", "status", "results": [...]} per applied batch."""
    guarded = _GuardedSocket(ws.sock)
    ws.sock = guarded
    sub: Subscription | None = None
    slot: _Slot | None = None
    hub = process_hub()
    try:
        token = _token()
        principal = _authenticate(token, "sync:submit")
        slot = _Slot(principal.user_id)
        slot.take()
        sub = hub.subscribe(f"user:{principal.user_id}")
        sub.on_drop = guarded.abort
        if isinstance(ws.event, _WakingEvent):
            ws.event.wake = sub.wake
        _watch_sync(ws, hub, principal, token, sub, slot=slot)
    except Refused as refused:
        with contextlib.suppress(ConnectionClosed, OSError):
            _send(ws, refused.message)
            ws.close(reason=refused.close_code, message=refused.message["title"])
    except OSError:
        pass
    finally:
        if sub is not None:
            hub.unsubscribe(sub)
        if slot is not None:
            slot.release()
