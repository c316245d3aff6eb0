"""The live-updates phase: N WebSockets held by one gevent `ws` process, and how fast a state change reaches them.

The sockets (one customer's, spread over a few of their orders) are opened with
the asyncio `websockets` client, a bounded number at a time; each waits for its
first message, the order's state. Then, in each round, every order is moved on
as a worker moves it (`kirana.orders.move`, then the live update the dispatcher sends), and the
time from each publish to the update's arrival at each of its sockets is taken.
Last, every socket must still be open: the goal is 1,000 concurrent sockets on
one API process, each of them getting every update.

Client and server share the machine (2 cores): the latencies include the
client's own work on a thousand sockets.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pymongo.database import Database
from websockets.asyncio.client import ClientConnection, connect

from bench.load import percentile
from bench.procstat import session_cpu_s
from kirana import accounts, orders, tokens
from kirana.config import Settings
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status
from tasks.base import publish_order_update

GOAL_SOCKETS = 1000
GOAL_ALL_WITHIN_S = 5.0
ORDERS = 4
CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT_S = 180.0
DELIVERY_TIMEOUT_S = 30.0
# Two state changes, as the orders worker makes them for a cash-on-delivery order.
ROUNDS = ((Status.ACCEPTED, Status.PROCESSING), (Status.PROCESSING, Status.CONFIRMED))


@dataclass
class Round:
    status: str
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0

    @property
    def all_within_ms(self) -> float:
        """From the first publish to the last arrival's latency: when every socket had it."""
        return max(self.latencies_ms, default=float("nan"))


@dataclass
class SocketsResult:
    requested: int
    opened: int = 0
    connect_s: float = 0.0
    connect_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    rounds: list[Round] = field(default_factory=list)
    held: int = 0
    server_rss_mb: float = 0.0
    # CPU seconds while opening the sockets, and during the rounds of updates (server, then this client).
    server_connect_cpu_s: float = 0.0
    server_rounds_cpu_s: float = 0.0
    client_rounds_cpu_s: float = 0.0

    @property
    def deliveries_ms(self) -> list[float]:
        return [ms for r in self.rounds for ms in r.latencies_ms]

    @property
    def met(self) -> bool:
        return (self.requested >= GOAL_SOCKETS and self.opened == self.requested and self.held == self.requested
                and all(r.missing == 0 for r in self.rounds)
                and all(r.all_within_ms <= GOAL_ALL_WITHIN_S * 1000 for r in self.rounds))

    @property
    def failed(self) -> bool:
        return self.opened < self.requested or self.held < self.opened or any(r.missing for r in self.rounds)


def session_rss_mb(sid: int) -> float:
    """Resident memory of the processes of session `sid` (gunicorn's master and worker), in MB."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[3]) != sid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def _customer_and_orders(database: Database, cfg: Settings, n_orders: int) -> tuple[str, list[str]]:
    """An access token of a new customer, and n accepted orders of theirs that nothing processes."""
    user = accounts.register(database, f"bench-live-{time.time_ns()}@example.in", "a bench passphrase 1234")
    session = tokens.open_session(database, user, two_factor=False, secret=cfg.token_secret, access_ttl_s=3600,
                                  refresh_ttl_s=3600)
    ids = []
    for _ in range(n_orders):
        order, _ = orders.place(database, NewOrder(user.id, "store-bench", (OrderItem("BENCH-SKU", 1),),
                                                   PaymentMethod.COD))
        ids.append(str(order["_id"]))
    return session.access_token, ids


async def _open(url: str, gate: asyncio.Semaphore, result: SocketsResult) -> ClientConnection | None:
    async with gate:
        started = time.perf_counter()
        try:
            # No compression offered (the server refuses it anyway); no client pings: the server pings.
            ws = await connect(url, proxy=None, compression=None, open_timeout=60, ping_interval=None,
                               close_timeout=2, max_queue=64)
        except Exception as exc:
            result.failures[f"connect: {type(exc).__name__}"] += 1
            return None
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        except Exception as exc:
            result.failures[f"state: {type(exc).__name__}"] += 1
            await ws.close()
            return None
        if first.get("type") != "state":
            result.failures[f"first message {first.get('type')!r}"] += 1
            await ws.close()
            return None
        result.connect_ms.append((time.perf_counter() - started) * 1000)
        return ws


async def _round(database: Database, plan: list[tuple[ClientConnection, str]], order_ids: list[str],
                 expected: Status, target: Status) -> Round:
    published: dict[str, float] = {}
    done = Round(str(target))

    async def arrival(ws: ClientConnection, order_id: str) -> None:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), DELIVERY_TIMEOUT_S))
        except Exception:
            done.missing += 1
            return
        arrived = time.perf_counter()
        if message.get("status") != str(target) or order_id not in published:
            done.missing += 1
            return
        done.latencies_ms.append((arrived - published[order_id]) * 1000)

    def publish(order_id: str, message: dict[str, object]) -> None:
        published[order_id] = time.perf_counter()  # the clock starts as the worker publishes
        publish_order_update(order_id, message)

    def move_all() -> None:
        for order_id in order_ids:
            moved = orders.move(database, order_id, expected, target)
            if moved is None:
                raise RuntimeError(f"bench order {order_id} was not {expected}")
            # The live update the dispatcher publishes for the move (bench: no follow-ups sent).
            publish(order_id, {"order_id": order_id, "status": str(target), "at_ms": moved["updated_at_ms"]})

    waiting = [asyncio.create_task(arrival(ws, order_id)) for ws, order_id in plan]
    await asyncio.sleep(0.2)  # every reader waits before the first publish
    await asyncio.to_thread(move_all)  # pymongo blocks: off the event loop
    await asyncio.gather(*waiting)
    return done


async def _run(result: SocketsResult, *, ws_base: str, database: Database, cfg: Settings,
               sid: int | None) -> None:
    n = result.requested
    token, order_ids = await asyncio.to_thread(_customer_and_orders, database, cfg, ORDERS)
    wanted = [order_ids[i % len(order_ids)] for i in range(n)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    def server_cpu() -> float:
        return session_cpu_s({"ws": sid})["ws"] if sid else 0.0

    cpu_before = server_cpu()
    started = time.perf_counter()
    opening = [asyncio.create_task(_open(f"{ws_base}/ws/orders/{oid}?access_token={token}", gate, result))
               for oid in wanted]
    try:
        opened = await asyncio.wait_for(asyncio.gather(*opening), CONNECT_TIMEOUT_S)
    except TimeoutError:
        for task in opening:
            task.cancel()
        opened = [t.result() if t.done() and not t.cancelled() and t.exception() is None else None
                  for t in opening]
        result.failures["connect: bench timeout"] += sum(1 for ws in opened if ws is None)
    result.connect_s = time.perf_counter() - started
    plan = [(ws, oid) for ws, oid in zip(opened, wanted, strict=True) if ws is not None]
    result.opened = len(plan)
    _log(f"sockets: {result.opened}/{n} open after {result.connect_s:.1f}s")
    result.server_connect_cpu_s = server_cpu() - cpu_before
    try:
        if sid:
            result.server_rss_mb = session_rss_mb(sid)
        cpu_before, client_before = server_cpu(), time.process_time()
        for expected, target in ROUNDS:
            result.rounds.append(await _round(database, plan, order_ids, expected, target))
            r = result.rounds[-1]
            _log(f"sockets: {target}: {len(r.latencies_ms)} arrived, {r.missing} missing, "
                 f"all within {r.all_within_ms:.0f} ms")
        result.server_rounds_cpu_s = server_cpu() - cpu_before
        result.client_rounds_cpu_s = time.process_time() - client_before
        await asyncio.sleep(0.5)
        result.held = sum(1 for ws, _ in plan if ws.close_code is None)
    finally:
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws, _ in plan), return_exceptions=True), 30)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_phase(*, ws_base: str, database: Database, cfg: Settings, n: int, sid: int | None) -> SocketsResult:
    """Open n sockets on the ws server at `ws_base` (ws://host:port); `sid`: its session, for CPU and memory."""
    result = SocketsResult(requested=n)
    asyncio.run(_run(result, ws_base=ws_base, database=database, cfg=cfg, sid=sid))
    return result


def report(result: SocketsResult, *, server: str) -> str:
    row = "{:<34}{:>9}{:>9}{:>9}{:>10}"
    connect = result.connect_ms
    lines = [
        f"kirana bench: live order updates, {result.requested} WebSockets over {ORDERS} orders, {server}",
        f"opened {result.opened}/{result.requested} in {result.connect_s:.1f} s"
        f" (connect + first state: p50 {percentile(connect, 50):.0f} ms, p99 {percentile(connect, 99):.0f} ms)"
        + (f"  failures: {dict(result.failures)}" if result.failures else ""),
        row.format("publish -> arrival", "p50 ms", "p99 ms", "max ms", "missing"),
    ]
    for r in result.rounds:
        lines.append(row.format(f"  state change to {r.status}", f"{percentile(r.latencies_ms, 50):.1f}",
                                f"{percentile(r.latencies_ms, 99):.1f}", f"{r.all_within_ms:.1f}", r.missing))
    every = result.deliveries_ms
    lines.append(row.format(f"  all {len(every)} deliveries", f"{percentile(every, 50):.1f}",
                            f"{percentile(every, 99):.1f}", f"{max(every, default=float('nan')):.1f}",
                            sum(r.missing for r in result.rounds)))
    lines.append(f"held open after the updates: {result.held}/{result.requested}; ws server RSS "
                 f"{result.server_rss_mb:.0f} MB with them open (gunicorn master + worker)")
    lines.append(f"CPU: ws server {result.server_connect_cpu_s:.1f} s opening them, "
                 f"{result.server_rounds_cpu_s:.2f} s for the {len(result.rounds)} rounds of updates "
                 f"(load generator {result.client_rounds_cpu_s:.2f} s); both on the same 2 cores")
    if result.met:
        verdict = "MET"
    elif result.requested < GOAL_SOCKETS:
        verdict = f"NOT MET (only {result.requested} sockets asked for)"
    else:
        verdict = "NOT MET"
    lines.append(f"goal: {GOAL_SOCKETS} concurrent sockets per API process, every one gets each update within "
                 f"{GOAL_ALL_WITHIN_S:.0f} s: {verdict}")
    return "\n".join(lines)

