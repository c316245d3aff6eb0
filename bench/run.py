"""One benchmark run: private servers, the API, the workers, the bare app, the phases, the tables.

`--only orders` runs the orders and bare phases (API, one orders worker, the
bare app); `--only webhooks` the webhook ingest phase (API and one webhooks
worker, see bench.webhooks); `all` (the default) both, orders first.

Imported only after `bench.__main__` has pointed REDIS_URL, MONGO_URL and
MONGO_DB at the private servers, because kirana.config reads them once.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo.database import Database

from bench import prune as prune_bench
from bench import search as search_bench
from bench import sockets, webhooks
from bench.bare_app import QUEUE as BARE_QUEUE
from bench.load import JSON_HEADERS, Client, Phase, order_bodies, percentile
from kirana import db, liveness, redis_conn, seed, stock
from kirana.config import ROOT, Settings, settings
from kirana.orders import Status
from stack import servers
from stack.commands import api_command, sandbox_command, sandbox_env, ws_command
from tasks.queues import Queue, unacked_key
from workers.pools import BY_NAME, worker_command

STORE_ID = seed.STORES[0]["_id"]
N_SKUS = 20
BENCH_STOCK = 10**9
ORDERS_PATH = "/api/v1/orders"
BARE_PATH = "/bare"
POOL = "orders"
WORKER_START_TIMEOUT_S = 60.0
TERMINAL_TIMEOUT_S = 120.0
_OPEN = [str(Status.ACCEPTED), str(Status.PROCESSING)]
# kombu's Redis transport keeps delivered, not yet acked messages in this hash.


@dataclass(frozen=True)
class Options:
    orders: int
    concurrency: int
    warmup: int
    seed: int
    only: str = "all"  # orders | webhooks | sockets | search | all
    webhooks: int = 10000
    # Start one webhooks worker to consume the events; if not, the queue is purged after.
    webhooks_worker: bool = True
    webhooks_shared: int = 3000
    # Time the ingest's parts on their own after the webhooks phase.
    breakdown: bool = True
    # bench.load.TRANSPORTS for every phase; None: requests for orders and bare, http for webhooks.
    client: str | None = None
    # WebSockets the live-updates phase opens on the one `ws` process (bench.sockets).
    sockets: int = 1000
    # Search phase (bench.search): measured searches (and as many suggests), the generated catalog's size
    # (0: skip), and the update stream the index lag is measured under.
    searches: int = 2000
    search_catalog: int = 50_000
    update_rate: float = 100.0
    update_seconds: float = 10.0
    # Orders and bare route at this fixed rate (requests/s, an open loop) instead of as fast as they go.
    rate: float | None = None
    # Instead of the orders and bare phases: each of these rates in turn, `rate_seconds` each.
    rates: tuple[float, ...] = ()
    rate_seconds: float = 60.0
    # Prune phase (bench.prune): old rows to prune, cash orders per measured batch around it.
    prune_rows: int = 1_000_000
    prune_orders: int = 200

    def client_for(self, phase: str) -> str:
        return self.client or ("raw" if phase == "webhooks" else "requests")

    @property
    def run_orders(self) -> bool:
        return self.only in ("orders", "all")

    @property
    def run_webhooks(self) -> bool:
        return self.only in ("webhooks", "all")

    @property
    def run_sockets(self) -> bool:
        return self.only in ("sockets", "all")

    @property
    def run_search(self) -> bool:
        return self.only in ("search", "all")

    @property
    def run_prune(self) -> bool:
        return self.only in ("prune", "all")

    @property
    def needs_orders(self) -> bool:
        """The catalog stocked and an orders worker: the orders phases and the prune phase's orders."""
        return self.run_orders or self.run_prune


@dataclass(frozen=True)
class Confirmation:
    """Submit -> confirmed of the measured orders."""

    latencies_ms: list[float]
    confirmed: int
    rejected: int
    unfinished: int
    # From the first order's acceptance to the last confirmation, to tell a backlog from a slow order.
    span_ms: float


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def stock_up(database: Database) -> list[str]:
    """~20 SKUs spread over the catalog, stocked so that no bench order runs short; their SKUs."""
    catalog = seed.catalog()
    step = max(1, len(catalog) // N_SKUS)
    skus = [product["sku"] for product in catalog[::step][:N_SKUS]]
    ids = [stock.product_id(STORE_ID, sku) for sku in skus]
    result = database[db.PRODUCTS].update_many({"_id": {"$in": ids}}, {"$set": {"stock": BENCH_STOCK}})
    if result.matched_count != len(ids):
        raise RuntimeError(f"stocked {result.matched_count} of {len(ids)} bench products; is the catalog seeded?")
    return skus


def wait_worker(worker: servers.Server, cfg: Settings, pool: str = POOL,
                timeout: float = WORKER_START_TIMEOUT_S) -> None:
    """Until the worker has beaten into `kirana:alive:<pool>` (it does so as soon as it is ready)."""
    r = redis_conn.client(cfg)
    deadline = time.monotonic() + timeout
    while liveness.alive(r, [pool], cfg.worker_alive_window_s)[pool] == 0:
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"the {pool} worker exited with {worker.proc.returncode}; see {worker.log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {pool} worker did not beat within {timeout:.0f}s; see {worker.log}")
        time.sleep(0.1)


def _open_filter() -> dict[str, object]:
    # No `_id: {$in: [...]}`: nx-27017 evaluates that outside SQLite, scanning the
    # collection in Python. The bench database holds only bench orders anyway.
    return {"status": {"$in": _OPEN}}


def wait_drained(cfg: Settings, database: Database, timeout: float = TERMINAL_TIMEOUT_S) -> int:
    """Until no order is accepted or processing, or `timeout`; how many are still open.

    Polls Redis (the orders queue and Celery's unacked hash, which holds every
    message a worker has taken but not yet acked: acks are late) and asks
    MongoDB only once the worker has nothing left, so the wait adds no load
    to the server the worker is waiting on.
    """
    r = redis_conn.client(cfg)
    orders = database[db.ORDERS]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = r.pipeline(transaction=False)
        pipe.llen(Queue.ORDERS.value)
        pipe.hlen(unacked_key(Queue.ORDERS))
        queued, unacked = pipe.execute()
        if queued or unacked:
            time.sleep(0.1)
            continue
        if orders.find_one(_open_filter(), {"_id": 1}) is None:
            return 0
        time.sleep(1.0)  # open orders but no message: a retry on its countdown, say
    return orders.count_documents(_open_filter())


def confirmation(database: Database, order_ids: Sequence[str]) -> Confirmation:
    ids = list(order_ids)
    orders = {
        doc["_id"]: doc
        for doc in database[db.ORDERS].find({"_id": {"$in": ids}},
                                            {"created_at_ms": 1, "status": 1, "history": 1})
    }
    confirmed_at = {
        order_id: int(doc["history"][Status.CONFIRMED]["at_ms"])
        for order_id, doc in orders.items() if Status.CONFIRMED in doc.get("history", {})
    }
    latencies = [
        float(at_ms - int(orders[order_id]["created_at_ms"]))
        for order_id, at_ms in confirmed_at.items()
        if order_id in orders
    ]
    statuses = [doc["status"] for doc in orders.values()]
    first = min((int(doc["created_at_ms"]) for doc in orders.values()), default=0)
    return Confirmation(
        latencies_ms=latencies,
        span_ms=float(max(confirmed_at.values(), default=first) - first),
        confirmed=statuses.count(str(Status.CONFIRMED)),
        rejected=statuses.count(str(Status.REJECTED)),
        unfinished=len(ids) - statuses.count(str(Status.CONFIRMED)) - statuses.count(str(Status.REJECTED)),
    )


def purge_bare_queue() -> int:
    """Drop the never-consumed `bench.noop` messages; how many there were."""
    from tasks.app import app as celery_app

    with celery_app.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(BARE_QUEUE) or 0)


def _order_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _flag(argv: Sequence[str], name: str) -> str:
    return argv[list(argv).index(name) + 1]


def _worker_kind(argv: Sequence[str]) -> str:
    """The API's gunicorn worker class, briefly ("gthread (balanced)" for stack.balanced_worker's)."""
    kind = _flag(argv, "--worker-class")
    return "gthread (balanced)" if kind.endswith("BalancedThreadWorker") else kind


def _errors(phase: Phase) -> str:
    if not phase.errors:
        return ""
    parts = ", ".join(f"{kind} x{n}" for kind, n in phase.errors.most_common())
    return f"  ({phase.sent - phase.ok} failed: {parts})"


def report(opts: Options, api_argv: Sequence[str], orders: Phase, bare: Phase, conf: Confirmation) -> str:
    workers, threads = _flag(api_argv, "--workers"), _flag(api_argv, "--threads")
    kind = _worker_kind(api_argv)
    row = "{:<22}{:>9}{:>10}{:>9}"
    lines = [
        f"kirana bench: {opts.orders} orders, concurrency {opts.concurrency} ({opts.client_for('orders')} sessions),"
        + (f" offered at {opts.rate:g}/s (open loop; latency from when each was due)," if opts.rate else "")
        + f" gunicorn {kind} {workers}x{threads}",
        row.format("", "req/s", "p50 ms", "p99 ms"),
    ]
    for label, phase in ((f"POST {ORDERS_PATH}", orders), ("bare apply_async route", bare)):
        lines.append(
            row.format(label, f"{phase.rate:.1f}", f"{phase.percentile(50):.1f}", f"{phase.percentile(99):.1f}")
            + _errors(phase)
        )
    ratio = orders.rate / bare.rate if bare.rate else float("nan")
    lines.append(f"{'ratio orders/bare':<22}{ratio:>9.2f}")
    tail = f"  ({conf.confirmed} confirmed, {conf.rejected} rejected"
    tail += f", {conf.unfinished} unfinished after {TERMINAL_TIMEOUT_S:.0f}s)" if conf.unfinished else ")"
    lines.append(
        f"submit->confirmed p50 {percentile(conf.latencies_ms, 50):.1f} ms"
        f"  p99 {percentile(conf.latencies_ms, 99):.1f} ms{tail}"
    )
    if conf.span_ms > 0:
        drain = conf.confirmed / (conf.span_ms / 1000)
        lines.append(f"orders worker confirmed {drain:.1f} orders/s (first accept -> last confirm, 1 worker)")
    return "\n".join(lines)


@dataclass(frozen=True)
class Running:
    """What `start_all` started and learnt."""

    cfg: Settings
    database: Database
    skus: list[str]
    api_argv: list[str]
    orders_url: str
    bare_url: str
    webhooks_url: str
    # By name: redis, mongo, api, worker-<pool>, bare, ws.
    servers: dict[str, servers.Server]
    # ws://host:port of the gevent WebSocket server, when the sockets phase runs.
    ws_base: str = ""
    # The run's temporary directory (logs).
    tmp: Path = Path("/tmp")

    def sessions(self) -> dict[str, int]:
        """The session id (= the pid started) of each running server, for bench.procstat, named for the table."""
        names = {"api": "api (gunicorn)", "mongo": servers.test_mongo_name(), "redis": "redis",
                 f"worker-{webhooks.POOL}": "webhooks worker"}
        return {label: server.proc.pid for name, label in names.items()
                if (server := self.servers.get(name)) is not None and server.proc is not None
                and server.proc.poll() is None}


def starter(started: list[servers.Server]) -> Callable[[servers.Server], servers.Server]:
    """A `start` that records each server in `started` first, so a half-started one is stopped too."""

    def start(server: servers.Server) -> servers.Server:
        started.append(server)
        return server.start(timeout=60)

    return start


def start_data_servers(tmp: Path, redis_port: int, mongo_port: int,
                       start: Callable[[servers.Server], servers.Server]) -> Database:
    """The run's own redis-server and nx-27017, their data under `tmp`; the indexed database."""
    for sub in ("redis", "mongo"):
        (tmp / sub).mkdir(exist_ok=True)
    start(servers.Server("redis", servers.redis_command(redis_port, tmp / "redis"), redis_port,
                         log=tmp / "redis.log"))
    start(servers.Server("mongo", servers.test_mongo_command(mongo_port, tmp / "mongo"), mongo_port,
                         log=tmp / "mongo.out"))
    database = db.database(settings())
    db.ensure_indexes(database)
    return database


def start_all(tmp: Path, redis_port: int, mongo_port: int, started: list[servers.Server],
              opts: Options) -> Running:
    """Servers, API, and what the selected phases need; each server joins `started` first.

    Orders: the catalog, one orders worker and the bare app. Webhooks: one
    webhooks worker, unless the queue is to be left unconsumed.
    """

    start = starter(started)
    log(f"redis-server :{redis_port} and {servers.test_mongo_name()} :{mongo_port} in {tmp}")
    database = start_data_servers(tmp, redis_port, mongo_port, start)
    cfg = settings()
    skus: list[str] = []
    if opts.run_search and not opts.needs_orders:
        seed.seed(database)
    if opts.needs_orders:
        seeded = seed.seed(database)
        skus = stock_up(database)
        log(f"seeded {seeded['products']} products; {len(skus)} bench SKUs stocked in {STORE_ID}")

    # The sockets phase opens thousands of sockets as one customer: past the per-user cap.
    env = servers.process_env(cfg.redis_url, cfg.mongo_url, KIRANA_WORKER_LOGLEVEL="WARNING",
                              WS_MAX_SOCKETS_PER_USER="1000000")
    api_port, bare_port = servers.free_port(), servers.free_port()
    api_argv = api_command(cfg, port=api_port)
    start(servers.Server("api", api_argv, api_port, env=env, log=tmp / "api.log", cwd=ROOT))
    pools = ([POOL] if opts.needs_orders else []) + (
        [webhooks.POOL] if opts.run_webhooks and opts.webhooks_worker else []) + (
        [search_bench.POOL] if opts.run_search else [])
    workers = {
        pool: start(servers.Server(f"worker-{pool}", worker_command(BY_NAME[pool]), None, env=env,
                                   log=tmp / f"worker-{pool}.log", cwd=ROOT))
        for pool in pools
    }
    if opts.run_orders:
        start(servers.Server("bare", api_command(cfg, port=bare_port, app="bench.bare_app:app"), bare_port,
                             env=env, log=tmp / "bare.log", cwd=ROOT))
    ws_port = servers.free_port()
    if opts.run_sockets:
        # The same app under gunicorn's gevent worker, one process: what "per API process" is measured on.
        start(servers.Server("ws", ws_command(cfg, ws_port), ws_port, env=env, log=tmp / "ws.log", cwd=ROOT))
    servers.wait_http(f"http://127.0.0.1:{api_port}/healthz", timeout=60)
    if opts.run_sockets:
        servers.wait_http(f"http://127.0.0.1:{ws_port}/healthz", timeout=60)
    for pool, worker in workers.items():
        wait_worker(worker, cfg, pool)
    log("API" + (", bare app" if opts.run_orders else "") + "".join(f", {pool} worker" for pool in pools)
        + (", ws server" if opts.run_sockets else "") + " up")
    base = f"http://127.0.0.1:{api_port}"
    return Running(
        cfg=cfg, database=database, skus=skus, api_argv=api_argv,
        orders_url=f"{base}{ORDERS_PATH}",
        bare_url=f"http://127.0.0.1:{bare_port}{BARE_PATH}",
        webhooks_url=f"{base}{webhooks.PATH}",
        servers={server.name: server for server in started},
        ws_base=f"ws://127.0.0.1:{ws_port}" if opts.run_sockets else "",
        tmp=tmp,
    )


def customer_headers(up: Running) -> dict[str, str]:
    """A signed-in customer's headers: orders are submitted as the token's user."""
    from kirana import accounts, tokens

    user = accounts.register(up.database, f"bench-{time.time_ns()}@example.in", "bench passphrase 1234")
    issued = tokens.open_session(up.database, user, two_factor=False, secret=up.cfg.token_secret,
                                 access_ttl_s=3600, refresh_ttl_s=3600)
    return {**JSON_HEADERS, "Authorization": f"Bearer {issued.access_token}"}


def orders_phase(opts: Options, up: Running, client: Client, warm: list[bytes], bodies: list[bytes]) -> Phase:
    """Warm up, let the worker drain the warmup, then measure from an empty queue."""
    headers = customer_headers(up)
    if warm:
        log(f"orders warmup: {len(warm)} requests")
        client.run(up.orders_url, warm, headers=[headers] * len(warm))
        wait_drained(up.cfg, up.database)
    log(f"orders: {opts.orders} requests at concurrency {opts.concurrency}"
        + (f", {opts.rate:g}/s" if opts.rate else ""))
    return client.run(up.orders_url, bodies, headers=[headers] * len(bodies), rate=opts.rate)


def bare_phase(opts: Options, up: Running, client: Client, warm: list[bytes], bodies: list[bytes]) -> Phase:
    """The same bodies at the same concurrency to the bare route; its messages are purged after."""
    if warm:
        log(f"bare warmup: {len(warm)} requests")
        client.run(up.bare_url, warm)
    log(f"bare: {opts.orders} requests at concurrency {opts.concurrency}")
    bare = client.run(up.bare_url, bodies, rate=opts.rate)
    purged = purge_bare_queue()
    if purged < bare.ok:
        log(f"warning: only {purged} bench.noop messages were queued for {bare.ok} answered requests")
    return bare


def run_orders(opts: Options, up: Running, clients: list[Client], stop: threading.Event) -> bool:
    """The orders and bare phases and their table (or the rate ladder); True when something failed."""
    if opts.rates:
        return run_ladder(opts, up, clients, stop)
    rng = random.Random(opts.seed)
    warm = order_bodies(opts.warmup, STORE_ID, up.skus, rng)
    bodies = order_bodies(opts.orders, STORE_ID, up.skus, rng)

    clients.append(Client(opts.concurrency, stop, opts.client_for("orders")))
    orders = orders_phase(opts, up, clients[-1], warm, bodies)
    order_ids = [_order_id(loc) for loc in orders.locations]
    log(f"orders: {orders.rate:.1f} req/s; waiting (<= {TERMINAL_TIMEOUT_S:.0f}s) for them to finish")
    wait_drained(up.cfg, up.database)
    conf = confirmation(up.database, order_ids)

    clients.append(Client(opts.concurrency, stop, opts.client_for("orders")))
    bare = bare_phase(opts, up, clients[-1], warm, bodies)

    print(report(opts, up.api_argv, orders, bare, conf), flush=True)
    print(flush=True)
    print(count_round_trips(up, conf), flush=True)
    return orders.ok < orders.sent or bare.ok < bare.sent or conf.unfinished > 0


# Issue 19: submit->confirmed p99 at 30 orders/s for 60 s on the embedded stack.
LADDER_GOAL_P99_MS = 250.0


def run_ladder(opts: Options, up: Running, clients: list[Client], stop: threading.Event) -> bool:
    """Cash orders at each of `opts.rates` for `opts.rate_seconds` (an open loop), one orders worker;
    submit->confirmed p50/p99 at each, and the highest rate whose p99 stays within the goal."""
    rng = random.Random(opts.seed)
    headers = customer_headers(up)
    rows, best, failed = [], None, False
    for rate in opts.rates:
        bodies = order_bodies(max(1, int(rate * opts.rate_seconds)), STORE_ID, up.skus, rng)
        clients.append(Client(opts.concurrency, stop, opts.client_for("orders")))
        log(f"ladder: {len(bodies)} orders at {rate:g}/s")
        phase = clients[-1].run(up.orders_url, bodies, headers=[headers] * len(bodies), rate=rate)
        wait_drained(up.cfg, up.database)
        conf = confirmation(up.database, [_order_id(loc) for loc in phase.locations])
        p99 = percentile(conf.latencies_ms, 99)
        lost = phase.sent - phase.ok + conf.unfinished
        ok = lost == 0 and p99 <= LADDER_GOAL_P99_MS
        best = rate if ok and (best is None or rate > best) else best
        failed |= lost > 0
        rows.append(f"{rate:8g} {phase.ok:9d} {percentile(conf.latencies_ms, 50):12.0f} {p99:12.0f} {lost:5d}  "
                    + ("within" if ok else "over"))
    head = (f"{'orders/s':>8} {'accepted':>9} {'p50 ms':>12} {'p99 ms':>12} {'lost':>5}  "
            f"p99 <= {LADDER_GOAL_P99_MS:g} ms")
    pool = BY_NAME[POOL]
    print(f"submit->confirmed, {opts.rate_seconds:g} s per rate, one orders worker "
          f"({pool.pool} -c {pool.env_concurrency()}), no follow-up pools")
    print("\n".join([head, *rows]))
    print(f"highest rate with p99 <= {LADDER_GOAL_P99_MS:g} ms and none lost: "
          + (f"{best:g} orders/s" if best is not None else "none of those tried"), flush=True)
    return failed


def count_round_trips(up: Running, conf: Confirmation) -> str:
    """Commands and round trips per order (bench/round_trips.py), with no worker consuming the orders queue."""
    from bench import round_trips

    up.servers[f"worker-{POOL}"].stop()
    port = int(up.cfg.razorpay_base_url.rstrip("/").rsplit(":", 1)[1])
    sandbox = servers.Server("sandbox", sandbox_command(up.cfg, webhook_url=up.webhooks_url), port,
                             env={**os.environ, **sandbox_env(up.cfg)}, log=up.tmp / "sandbox.log", cwd=ROOT)
    sandbox.start(timeout=60)
    try:
        confirmed_per_s = conf.confirmed / (conf.span_ms / 1000) if conf.span_ms > 0 else None
        return round_trips.run_phase(up.database, STORE_ID, up.skus, up.cfg.razorpay_base_url, confirmed_per_s)
    finally:
        sandbox.stop()


def run_webhooks(opts: Options, up: Running, clients: list[Client], stop: threading.Event) -> bool:
    """The webhook ingest phases, their checks, the breakdown and the table; True when something failed.

    First ingest alone, the webhooks worker stopped (what the goal is about: on
    2 cores a worker handling beside it takes CPU the API would use; in
    production the pools run on machines of their own); then the worker,
    started again, drains what was stored, and a shorter run measures ingest
    while it handles.
    """
    clients.append(Client(opts.concurrency, stop, opts.client_for("webhooks")))
    r = redis_conn.client(up.cfg)
    worker = up.servers.get(f"worker-{webhooks.POOL}")
    if worker is not None:
        worker.stop()
    common: dict[str, Any] = {"url": up.webhooks_url, "client": clients[-1], "database": up.database, "r": r,
                              "cfg": up.cfg}
    alone = webhooks.run_phase(**common, rng=random.Random(opts.seed + 1), n=opts.webhooks, warmup=opts.warmup,
                               consumed=False, sessions=up.sessions(), purge_after=worker is None)
    drained = shared = None
    if worker is not None:
        worker.start(timeout=60)
        wait_worker(worker, up.cfg, webhooks.POOL)
        drained = webhooks.drain(up.database, r, time.monotonic())
        if opts.webhooks_shared:
            shared = webhooks.run_phase(**common, rng=random.Random(opts.seed + 3), n=opts.webhooks_shared,
                                        warmup=0, consumed=True, sessions=up.sessions())
    breakdown: list[str] = []
    if opts.breakdown:
        if worker is not None:
            worker.stop()  # so that it neither competes for the CPU nor consumes what the breakdown publishes
        log("webhooks breakdown: the ingest's parts on their own")
        breakdown = webhooks.breakdown(database=up.database, cfg=up.cfg, rng=random.Random(opts.seed + 2),
                                       sessions=up.sessions(), client=clients[-1], url=up.webhooks_url)
    kind = _worker_kind(up.api_argv)
    server = f"gunicorn {kind} {_flag(up.api_argv, '--workers')}x{_flag(up.api_argv, '--threads')}"
    pool = BY_NAME[webhooks.POOL]
    print(webhooks.report(alone, drained=drained, shared=shared, concurrency=opts.concurrency,
                          client=opts.client_for("webhooks"), server=server,
                          pool_desc=f"{pool.pool} x{pool.env_concurrency()}", breakdown=breakdown), flush=True)
    return any(part is not None and part.failed for part in (alone, drained, shared))


def run_sockets(opts: Options, up: Running) -> bool:
    """The live-updates phase (bench.sockets) and its table; True when something failed."""
    ws = up.servers["ws"]
    result = sockets.run_phase(ws_base=up.ws_base, database=up.database, cfg=up.cfg, n=opts.sockets,
                               sid=ws.proc.pid if ws.proc is not None else None)
    server = f"gunicorn {_flag(ws.argv, '--worker-class')} x{_flag(ws.argv, '--workers')}"
    print(sockets.report(result, server=server), flush=True)
    return result.failed


def run_search(opts: Options, up: Running) -> bool:
    """The search phase (bench.search) and its table; True when something failed."""
    base = up.orders_url.removesuffix(ORDERS_PATH)
    result = search_bench.run_phase(base_url=base, database=up.database, cfg=up.cfg, n=opts.searches,
                                    concurrency=opts.concurrency, update_rate=opts.update_rate,
                                    update_seconds=opts.update_seconds, big=opts.search_catalog,
                                    rng=random.Random(opts.seed + 3))
    print(search_bench.report(result), flush=True)
    return result.failed


def run_prune(opts: Options, up: Running, clients: list[Client], stop: threading.Event) -> bool:
    """The bounded-storage prune phase (bench.prune) and its lines; True when something failed."""
    rng = random.Random(opts.seed + 5)
    clients.append(Client(opts.concurrency, stop, opts.client_for("orders")))
    headers = customer_headers(up)

    def orders_per_s() -> tuple[float, int]:
        bodies = order_bodies(opts.prune_orders, STORE_ID, up.skus, rng)
        phase = clients[-1].run(up.orders_url, bodies, headers=[headers] * len(bodies))
        wait_drained(up.cfg, up.database)
        conf = confirmation(up.database, [_order_id(loc) for loc in phase.locations])
        return (conf.confirmed / (conf.span_ms / 1000) if conf.span_ms else 0.0), conf.confirmed

    log(f"prune: filling {opts.prune_rows:,} old rows, then orders before and during the prune")
    result = prune_bench.run_phase(up.database, up.cfg, opts.prune_rows, orders_per_s)
    print(prune_bench.report(result, servers.test_mongo_name()), flush=True)
    return result.failed


def run(opts: Options, tmp: Path, redis_port: int, mongo_port: int, stop: threading.Event) -> int:
    """Start everything under `tmp`, run the selected phases, print the tables; stop everything it started."""
    started: list[servers.Server] = []
    clients: list[Client] = []
    try:
        up = start_all(tmp, redis_port, mongo_port, started, opts)
        phases: list[tuple[bool, Callable[[], bool]]] = [
            (opts.run_orders, lambda: run_orders(opts, up, clients, stop)),
            (opts.run_webhooks, lambda: run_webhooks(opts, up, clients, stop)),
            (opts.run_sockets, lambda: run_sockets(opts, up)),
            (opts.run_search, lambda: run_search(opts, up)),
            (opts.run_prune, lambda: run_prune(opts, up, clients, stop)),
        ]
        failed = False
        ran = 0
        for selected, phase in phases:
            if selected:
                if ran:
                    print(flush=True)
                failed |= phase()
                ran += 1
        return 1 if failed else 0
    except Exception:
        _show_logs(tmp)
        raise
    finally:
        stop.set()
        with _signals_ignored():
            for client in clients:
                client.close()
            for server in reversed(started):
                try:
                    server.stop()
                except Exception as exc:  # stop the others all the same
                    log(f"could not stop {server.name}: {exc}")


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while cleaning up: a second one must not leave servers behind.

    (`timeout` sends its signal to the process and again to its group, so two arrive at once.)
    """
    caught = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in caught}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _show_logs(tmp: Path, lines: int = 15) -> None:
    for path in sorted(tmp.glob("*.log")) + sorted(tmp.glob("*.out")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        if text:
            print(f"--- last lines of {path.name} ---", *text, sep="\n", file=sys.stderr)
