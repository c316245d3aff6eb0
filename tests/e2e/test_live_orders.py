"""Live order updates over real WebSockets: the gevent `ws` server of the stack, real workers, real Redis.

The clients are the `websockets` library's (sync for one socket, asyncio for many);
simple-websocket's client loses a message that arrives in the same packet as the
handshake's answer, which is exactly what a refusal looks like.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from kirana import db as collections
from kirana import orders
from kirana.clock import now_ms
from kirana.live import CHANNEL_PREFIX
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status
from kirana.permissions import Role
from kirana.seed import STORES
from tasks import dispatch
from tasks.base import publish_order_update
from tests.harness import Client, ws_server

pytestmark = pytest.mark.e2e

STORE = STORES[0]["_id"]
NO_SUCH_ORDER = "ord_01NOSUCHORDER0000000000000"


def _url(stack: Any, order_id: str, token: str | None, *, header: bool = False) -> tuple[str, dict[str, str]]:
    url = f"{stack.ws_url}/ws/orders/{order_id}"
    if token and header:
        return url, {"Authorization": f"Bearer {token}"}
    return (f"{url}?access_token={token}" if token else url), {}


def _connect(stack: Any, order_id: str, token: str | None, *, header: bool = False, **options: Any) -> ClientConnection:
    url, headers = _url(stack, order_id, token, header=header)
    return connect(url, additional_headers=headers, proxy=None, open_timeout=10, close_timeout=2, **options)


def _recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def _token(client: Client) -> str:
    return str(client.tokens["access_token"])


def _held_order(stack: Any, customer: Client) -> str:
    """An accepted order nobody processes (it is not enqueued): the test moves it itself, as a worker would."""
    product = stack.db[collections.PRODUCTS].find_one({"store_id": STORE, "stock": {"$gte": 1}})
    new = NewOrder(customer.user_id, STORE, (OrderItem(product["sku"], 1),), PaymentMethod.COD)
    order, _ = orders.place(stack.db, new)
    # Its follow-ups (processing above all) forgotten unsent, so that neither the API nor the dispatch
    # sweep hands it to a worker; its live update sent as the dispatcher would.
    stack.db[collections.ORDERS].update_one({"_id": order["_id"]}, {"$unset": {"intents": "", "intents_at_ms": ""}})
    publish_order_update(order["_id"], {"order_id": order["_id"], "status": "accepted",
                                        "at_ms": order["created_at_ms"]})
    return str(order["_id"])


def _move(stack: Any, order_id: str, expected: Status, target: Status) -> None:
    moved = orders.move(stack.db, order_id, expected, target)
    assert moved is not None
    dispatch.send(moved)  # as the worker that moved it would: its live update and follow-ups


def _in_stock(stack: Any) -> dict[str, Any]:
    return stack.db[collections.PRODUCTS].find_one({"store_id": STORE, "stock": {"$gte": 20}})


@pytest.mark.parametrize("header", [False, True], ids=["access_token-param", "authorization-header"])
def test_a_customer_sees_the_state_then_every_status_until_confirmed(stack, customer, header) -> None:  # type: ignore[no-untyped-def]
    product = _in_stock(stack)
    resp = customer.submit({"store_id": STORE, "payment_method": "cod", "items": [{"sku": product["sku"], "qty": 1}]})
    assert resp.status_code == 202
    order_id = resp.json()["id"]

    with _connect(stack, order_id, _token(customer), header=header) as ws:
        state = _recv(ws)
        updates: list[dict[str, Any]] = []
        status = state["order"]["status"] if state.get("type") == "state" else None
        while status != "confirmed":
            updates.append(_recv(ws))
            status = updates[-1].get("status")

    assert state["type"] == "state"
    assert state["order"]["id"] == order_id and state["order"]["customer_id"] == customer.user_id
    assert all(u["type"] == "status" and u["order_id"] == order_id for u in updates), updates
    # The state's events and the updates after it: the whole story, once each, in order.
    story = [e["status"] for e in state["order"]["events"]] + [u["status"] for u in updates]
    assert story == ["accepted", "processing", "confirmed"]
    at = [e["at_ms"] for e in state["order"]["events"]] + [u["at_ms"] for u in updates]
    assert at == sorted(at)


def test_a_client_that_reconnects_gets_the_current_state_first(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id = _held_order(stack, customer)

    with _connect(stack, order_id, _token(customer)) as ws:
        assert _recv(ws)["order"]["status"] == "accepted"
        _move(stack, order_id, Status.ACCEPTED, Status.PROCESSING)
        update = _recv(ws)
        assert (update["type"], update["status"]) == ("status", "processing")
    # While nobody listens, the order is confirmed: that message is gone for good.
    _move(stack, order_id, Status.PROCESSING, Status.CONFIRMED)

    with _connect(stack, order_id, _token(customer)) as again:
        first = _recv(again)
        assert first["type"] == "state"
        assert first["order"]["status"] == "confirmed"
        assert [e["status"] for e in first["order"]["events"]] == ["accepted", "processing", "confirmed"]
        with pytest.raises(TimeoutError):
            again.recv(timeout=0.5)  # nothing stale follows the state


def _refusal(stack: Any, order_id: str, token: str | None) -> tuple[dict[str, Any], int | None]:
    """The one message of a refused socket, and the code it was closed with."""
    with _connect(stack, order_id, token) as ws:
        message = _recv(ws)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    return message, closed.value.rcvd.code if closed.value.rcvd else None


def test_a_strangers_token_and_a_bad_token_are_refused(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id = _held_order(stack, customer)
    stranger = stack.customer()

    strangers, strangers_code = _refusal(stack, order_id, _token(stranger))
    unknown, unknown_code = _refusal(stack, NO_SUCH_ORDER, _token(stranger))
    bad, bad_code = _refusal(stack, order_id, "not-a-token")
    missing, missing_code = _refusal(stack, order_id, None)

    assert strangers["type"] == "error" and strangers["status"] == 404 and strangers_code == 4404
    # Someone else's order looks exactly like no order at all.
    assert {k: v for k, v in strangers.items() if k != "detail"} == {k: v for k, v in unknown.items() if k != "detail"}
    assert strangers["detail"].replace(order_id, "X") == unknown["detail"].replace(NO_SUCH_ORDER, "X")
    assert unknown_code == 4404
    assert (bad["type"], bad["status"], bad_code) == ("error", 401, 4401)
    assert (missing["type"], missing["status"], missing_code) == ("error", 401, 4401)
    assert customer.user_id not in json.dumps([strangers, unknown, bad, missing]), "a refusal leaked the order"


def test_other_roles_watch_by_the_same_rules_as_over_http(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id = _held_order(stack, customer)

    with _connect(stack, order_id, _token(stack.user(Role.OPS))) as ops:
        assert _recv(ops)["order"]["id"] == order_id
    other_store = stack.user(Role.STORE_STAFF, store_id=STORES[1]["_id"])
    assert _refusal(stack, order_id, _token(other_store))[0]["status"] == 404
    # Ops who have not logged in with a second factor may not read orders yet.
    message, code = _refusal(stack, order_id, _token(stack.user(Role.OPS, two_factor=False)))
    assert (message["status"], message["problem"], code) == (403, "/problems/two-factor-required", 4403)


def test_a_logged_out_token_is_refused(stack) -> None:  # type: ignore[no-untyped-def]
    customer = stack.customer()
    order_id = _held_order(stack, customer)
    assert customer.http.post(customer.url("/api/v1/auth/logout")).status_code == 204

    message, code = _refusal(stack, order_id, _token(customer))

    assert (message["status"], code) == (401, 4401)
    assert "log in again" in message["detail"]


@pytest.fixture(scope="module")
def quick_reauth_ws(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A ws server of its own that checks open sockets' tokens every second, and lets a user open two sockets,
    on the stack's Redis and MongoDB."""
    with ws_server(Path(stack.run_dir), stack.cfg, name="ws-reauth", WS_REAUTH_S="1",
                   WS_MAX_SOCKETS_PER_USER="2") as server:
        yield f"ws://127.0.0.1:{server.port}"


def test_an_open_socket_ends_once_its_session_is_revoked_and_others_live_on(stack, quick_reauth_ws) -> None:  # type: ignore[no-untyped-def]
    leaving, staying = stack.customer(), stack.customer()
    leaving_order, staying_order = _held_order(stack, leaving), _held_order(stack, staying)

    def watch(order_id: str, who: Client) -> ClientConnection:
        return connect(f"{quick_reauth_ws}/ws/orders/{order_id}?access_token={_token(who)}", proxy=None,
                       open_timeout=10, close_timeout=2)

    with watch(leaving_order, leaving) as gone, watch(staying_order, staying) as kept:
        assert _recv(gone)["type"] == "state" and _recv(kept)["type"] == "state"
        time.sleep(1.5)  # a check passes with both sessions open: nobody is closed
        assert leaving.http.post(leaving.url("/api/v1/auth/logout")).status_code == 204
        revoked_at = time.monotonic()

        message = _recv(gone, timeout=5)
        with pytest.raises(ConnectionClosed) as closed:
            gone.recv(timeout=5)
        assert time.monotonic() - revoked_at < 3, "not ended within WS_REAUTH_S (1 s) and a margin"
        assert (message["type"], message["status"]) == ("error", 401), message
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        # The other customer's socket outlived the checks and still gets its updates.
        _move(stack, staying_order, Status.ACCEPTED, Status.PROCESSING)
        update = _recv(kept, timeout=5)
        assert (update["type"], update["status"]) == ("status", "processing"), update


async def _open(stack: Any, order_id: str, token: str, gate: asyncio.Semaphore) -> AsyncConnection:
    url, _ = _url(stack, order_id, token)
    async with gate:
        ws = await async_connect(url, proxy=None, open_timeout=30, close_timeout=2)
        state = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert state["type"] == "state", state
        return ws


async def _fan_out(stack: Any, order_ids: list[str], token: str, per_order: int) -> tuple[list[float], int]:
    """Open per_order sockets on each order, publish one update per order; each socket's latency in ms."""
    gate = asyncio.Semaphore(50)
    plan = [order_id for order_id in order_ids for _ in range(per_order)]
    sockets = await asyncio.gather(*(_open(stack, order_id, token, gate) for order_id in plan))
    published: dict[str, float] = {}

    async def arrival(ws: AsyncConnection, order_id: str) -> float:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        arrived = time.perf_counter()
        assert message == {"type": "status", "order_id": order_id, "status": "processing", "at_ms": message["at_ms"]}
        return (arrived - published[order_id]) * 1000

    try:
        waiting = [asyncio.create_task(arrival(ws, order_id)) for ws, order_id in zip(sockets, plan, strict=True)]
        await asyncio.sleep(0.2)  # every reader is waiting before the clock starts
        r = redis.Redis.from_url(stack.cfg.redis_url)
        for order_id in order_ids:
            published[order_id] = time.perf_counter()
            # What tasks.base.publish_order_update sends after a status change.
            r.publish(f"{CHANNEL_PREFIX}{order_id}",
                      json.dumps({"order_id": order_id, "status": "processing", "at_ms": now_ms()}))
        latencies = await asyncio.gather(*waiting)
        still_open = sum(1 for ws in sockets if ws.close_code is None)
        return latencies, still_open
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def test_200_concurrent_sockets_all_receive_a_published_update_within_seconds(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_ids = [_held_order(stack, customer) for _ in range(4)]

    latencies, still_open = asyncio.run(_fan_out(stack, order_ids, _token(customer), per_order=50))

    assert len(latencies) == 200
    assert still_open == 200
    p50, p99 = statistics.quantiles(latencies, n=100)[49], statistics.quantiles(latencies, n=100)[98]
    print(f"\n200 sockets: publish->arrival p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
    assert max(latencies) < 3000, f"the last socket got the update after {max(latencies):.0f} ms"


def _never_reading_socket(stack: Any, order_id: str, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: a stalled phone, say."""
    host, port = stack.ws_url.removeprefix("ws://").split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /ws/orders/{order_id}?access_token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    raw.settimeout(10)
    answer = raw.recv(1024)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return raw


def test_a_client_that_never_reads_does_not_hold_up_the_others(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id = _held_order(stack, customer)
    slow = _never_reading_socket(stack, order_id, _token(customer))
    n, pad = 400, "x" * 32_000  # ~13 MB: more than the slow socket's kernel buffers and its queue together
    got: list[int] = []

    with _connect(stack, order_id, _token(customer), max_queue=1024, max_size=2**20) as fast:
        assert _recv(fast)["type"] == "state"

        def read() -> None:
            while len(got) < n:
                got.append(_recv(fast, timeout=15)["seq"])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        r = redis.Redis.from_url(stack.cfg.redis_url)
        started = time.monotonic()
        # In batches that the reading client keeps up with: what is measured is whether the
        # one that never reads holds it up, not how big a burst a queue absorbs.
        for batch in range(0, n, 20):
            for seq in range(batch, batch + 20):
                r.publish(f"{CHANNEL_PREFIX}{order_id}", json.dumps({"type": "location", "seq": seq, "pad": pad}))
            while len(got) < batch + 20 and reader.is_alive() and time.monotonic() - started < 20:
                time.sleep(0.005)
        reader.join(5)
        elapsed = time.monotonic() - started

    assert got == list(range(n)), f"the reading client got {len(got)} of {n}"
    assert elapsed < 15, f"the reading client took {elapsed:.1f}s"
    # The slow one was dropped: what its buffers hold, then the end of the stream (not a 40 s ping timeout).
    slow.settimeout(1)
    deadline = time.monotonic() + 15
    closed = False
    while not closed and time.monotonic() < deadline:
        try:
            closed = slow.recv(1 << 20) == b""
        except TimeoutError:
            continue
        except OSError:  # reset: dropped just as well
            closed = True
    slow.close()
    assert closed, "the server kept a client that never reads"


def test_the_whole_delivery_reaches_the_customers_socket_in_order(stack, customer) -> None:  # type: ignore[no-untyped-def]
    # Given a confirmed order with a rider assigned, watched by its customer from the start.
    staff = stack.user(Role.STORE_STAFF, store_id=STORE)
    rider = stack.user(Role.RIDER)
    product = _in_stock(stack)
    order_id = customer.submit({"store_id": STORE, "payment_method": "cod",
                                "items": [{"sku": product["sku"], "qty": 1}]}).json()["id"]
    with _connect(stack, order_id, _token(customer)) as ws:
        seen = [e["status"] for e in _recv(ws)["order"]["events"]]
        while seen[-1] != "confirmed":
            seen.append(_recv(ws)["status"])
        staff.http.post(staff.url(f"/api/v1/deliveries/{order_id}/assign"), json={"rider_id": rider.user_id},
                        timeout=10)

        # When the rider picks it up, shares where they are, and hands it over.
        rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/pickup"), timeout=10)
        rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/location"), json={"lat": 18.5, "lng": 73.8},
                        timeout=10)
        rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/delivered"), timeout=10)
        messages = []
        while not messages or messages[-1].get("status") != "delivered":
            messages.append(_recv(ws))

    # Then the socket told the whole story, in order, with the location in between.
    assert seen == ["accepted", "processing", "confirmed"]
    assert [m.get("status", m["type"]) for m in messages] == ["out_for_delivery", "location", "delivered"]
    assert (messages[1]["lat"], messages[1]["lng"]) == (18.5, 73.8)


def _closed_with(ws: ClientConnection, timeout: float = 5) -> tuple[dict[str, Any], int | None]:
    message = _recv(ws, timeout=timeout)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=timeout)
    return message, closed.value.rcvd.code if closed.value.rcvd else None


def test_a_user_may_hold_only_so_many_open_sockets_and_a_closed_one_frees_its_place(stack, quick_reauth_ws) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 13: a per-user cap (WS_MAX_SOCKETS_PER_USER, 2 on this server)."""
    customer = stack.customer()
    order_id = _held_order(stack, customer)
    url = f"{quick_reauth_ws}/ws/orders/{order_id}?access_token={_token(customer)}"

    with connect(url, proxy=None, open_timeout=10) as first, connect(url, proxy=None, open_timeout=10) as second:
        assert _recv(first)["type"] == _recv(second)["type"] == "state"
        with connect(url, proxy=None, open_timeout=10) as third:
            message, code = _closed_with(third)
        assert (message["status"], message["problem"], code) == (429, "/problems/too-many-sockets", 4429)
        other = stack.customer()  # the cap is per user
        with connect(f"{quick_reauth_ws}/ws/orders/{_held_order(stack, other)}?access_token={_token(other)}",
                     proxy=None, open_timeout=10) as theirs:
            assert _recv(theirs)["type"] == "state"
    with connect(url, proxy=None, open_timeout=10) as again:  # the two closed: their places are free
        assert _recv(again)["type"] == "state"


def test_a_rider_taken_off_a_delivery_stops_getting_it_at_the_next_check(stack, quick_reauth_ws) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 13: the periodic re-check asks again whether the user may see the order."""
    customer = stack.customer()
    order_id = _held_order(stack, customer)
    _move(stack, order_id, Status.ACCEPTED, Status.PROCESSING)
    _move(stack, order_id, Status.PROCESSING, Status.CONFIRMED)
    staff, first, second = stack.user(Role.STORE_STAFF, store_id=STORE), stack.user(Role.RIDER), stack.user(Role.RIDER)
    assign = staff.url(f"/api/v1/deliveries/{order_id}/assign")
    assert staff.http.post(assign, json={"rider_id": first.user_id}, timeout=10).status_code == 200

    with connect(f"{quick_reauth_ws}/ws/orders/{order_id}?access_token={_token(first)}", proxy=None,
                 open_timeout=10) as watching:
        assert _recv(watching)["type"] == "state"
        time.sleep(1.5)  # a check passes while the delivery is still theirs
        assert staff.http.post(assign, json={"rider_id": second.user_id}, timeout=10).status_code == 200
        taken_off = time.monotonic()
        message, code = _closed_with(watching)
        assert time.monotonic() - taken_off < 4, "not ended within WS_REAUTH_S (1 s) and a margin"

    assert (message["type"], message["status"], code) == ("error", 404, 4404)
    with connect(f"{quick_reauth_ws}/ws/orders/{order_id}?access_token={_token(second)}", proxy=None,
                 open_timeout=10) as now_theirs:
        assert _recv(now_theirs)["order"]["id"] == order_id
