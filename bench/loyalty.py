"""The loyalty phase: ledger entries/s through the leaderboards queue, and a full leaderboard refresh.

1. Incremental: N confirmed orders (generated straight into MongoDB, over a
   few hundred customers and 50 stores in 10 cities) each get one
   `leaderboards.sync_order` task; one leaderboards worker (the pool table's)
   drains them. Measured from the first enqueue until every order is synced:
   ledger entries/s and orders/s. Each sync reads the order, its products and
   the customer's confirmed orders (achievements), inserts 1-3 entries, updates
   the account once per entry and runs one Lua call per entry on 8 boards.
2. Refresh: L ledger entries over U customers (default 1,000,000 over
   100,000), generated and bulk-inserted, then `boards.refresh` rebuilds every
   current board; the MongoDB read is also timed on its own, to show what
   bounds the refresh.

Imported after bench.__main__ has pointed REDIS_URL / MONGO_URL at private servers.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from bench.run import log, start_data_servers, starter, wait_worker
from kirana import db, redis_conn
from kirana.clock import now_ms, utcnow
from kirana.config import ROOT, settings
from kirana.loyalty import boards
from stack import servers
from workers.pools import BY_NAME, worker_command

POOL = "leaderboards"
STORES = 50
CITIES = 10
SKUS = 20
CATEGORIES = ("Dairy", "Atta & Flours", "Dals & Pulses", "Beverages", "Snacks & Namkeen", "Dry Fruits")
INSERT_CHUNK = 10_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class LoyaltyOptions:
    awards: int = 2000
    award_customers: int = 300
    ledger: int = 1_000_000
    customers: int = 100_000
    seed: int = 1


def _shops(database) -> list[str]:  # type: ignore[no-untyped-def]
    stores = [{"_id": f"bench-store-{i:02d}", "name": f"Store {i}", "city": f"City {i % CITIES}"}
              for i in range(STORES)]
    database[db.STORES].insert_many(stores)
    database[db.PRODUCTS].insert_many([
        {"_id": f"{s['_id']}:SKU{j}", "store_id": s["_id"], "sku": f"SKU{j}", "name": f"Item {j}",
         "category": CATEGORIES[j % len(CATEGORIES)], "price_paise": 2_500 + 1_750 * j, "stock": 10**9}
        for s in stores for j in range(SKUS)
    ])
    return [s["_id"] for s in stores]


def _confirmed_orders(database, stores: list[str], opts: LoyaltyOptions) -> list[str]:  # type: ignore[no-untyped-def]
    rnd = random.Random(opts.seed)
    now = now_ms()
    docs = []
    for i in range(opts.awards):
        store = rnd.choice(stores)
        lines = []
        for j in rnd.sample(range(SKUS), rnd.randint(1, 3)):
            qty = rnd.randint(1, 4)
            unit = 2_500 + 1_750 * j
            lines.append({"sku": f"SKU{j}", "name": f"Item {j}", "qty": qty, "unit_price_paise": unit,
                          "line_total_paise": unit * qty})
        at = now - rnd.randrange(20 * DAY_MS)
        oid = f"ord_bench{i:07d}"
        docs.append({"_id": oid, "customer_id": f"bcust{rnd.randrange(opts.award_customers):05d}", "store_id": store,
                     "items": [{"sku": x["sku"], "qty": x["qty"]} for x in lines], "lines": lines,
                     "total_paise": sum(x["line_total_paise"] for x in lines), "payment_method": "cod",
                     "status": "confirmed", "idempotency_key": f"auto:{oid}", "request_fingerprint": "bench",
                     "history": {"confirmed": {"status": "confirmed", "seq": 5, "at_ms": at}},
                     "created_at": utcnow(), "created_at_ms": at, "updated_at_ms": at})
    for start in range(0, len(docs), INSERT_CHUNK):
        database[db.ORDERS].insert_many(docs[start:start + INSERT_CHUNK], ordered=False)
    return [d["_id"] for d in docs]


@dataclass(frozen=True)
class Incremental:
    orders: int
    entries: int
    enqueue_s: float
    seconds: float

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds


def incremental(database, order_ids: list[str], timeout_s: float = 900.0) -> Incremental:  # type: ignore[no-untyped-def]
    from tasks.leaderboards import sync_order

    started = time.perf_counter()
    for order_id in order_ids:
        sync_order.apply_async(args=[order_id])
    enqueued = time.perf_counter() - started
    deadline = time.monotonic() + timeout_s
    # Each order's sync ends by setting loyalty_state; poll that, not the ledger (counts are slow on nx-27017).
    while database[db.ORDERS].count_documents({"loyalty_state": "confirmed"}) < len(order_ids):
        if time.monotonic() > deadline:
            raise TimeoutError("the leaderboards worker did not sync every order in time")
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    return Incremental(len(order_ids), database[db.LOYALTY_LEDGER].estimated_document_count(), enqueued, seconds)


@dataclass(frozen=True)
class Refresh:
    entries: int
    customers: int
    insert_s: float
    read_s: float
    refreshed: boards.Refreshed
    redis_bytes: int


def _generate_ledger(database, opts: LoyaltyOptions) -> float:  # type: ignore[no-untyped-def]
    rnd = random.Random(opts.seed + 1)
    now = now_ms()
    started = time.perf_counter()
    chunk: list[dict] = []
    for i in range(opts.ledger):
        store = rnd.randrange(STORES)
        at = now - rnd.randrange(60 * DAY_MS)
        chunk.append({"_id": f"gen{i:08d}:base", "customer_id": f"gcust{rnd.randrange(opts.customers):06d}",
                      "order_id": f"gen{i:08d}", "store_id": f"bench-store-{store:02d}",
                      "city": f"city-{store % CITIES}", "rule": "base", "kind": "earn",
                      "points": rnd.randint(1, 60), "board": True, "at_ms": at, "created_at_ms": at})
        if len(chunk) == INSERT_CHUNK:
            database[db.LOYALTY_LEDGER].insert_many(chunk, ordered=False)
            chunk = []
            if (i + 1) % 100_000 == 0:
                log(f"  {i + 1:,} ledger entries inserted ({(i + 1) / (time.perf_counter() - started):,.0f}/s)")
    if chunk:
        database[db.LOYALTY_LEDGER].insert_many(chunk, ordered=False)
    return time.perf_counter() - started


def full_refresh(database, opts: LoyaltyOptions) -> Refresh:  # type: ignore[no-untyped-def]
    r = redis_conn.client()
    insert_s = _generate_ledger(database, opts)
    log(f"{opts.ledger:,} entries inserted in {insert_s:.1f}s; reading them once on their own")
    started = time.perf_counter()
    read = sum(1 for _ in database[db.LOYALTY_LEDGER].find(
        {"board": True, "created_at_ms": {"$lte": now_ms()}},
        {"_id": 0, "customer_id": 1, "store_id": 1, "city": 1, "points": 1, "at_ms": 1}, batch_size=10_000))
    read_s = time.perf_counter() - started
    log(f"read {read:,} entries in {read_s:.1f}s; now the refresh")
    done = boards.refresh(database, boards.Boards(r), now_ms=now_ms(), margin_ms=0)
    return Refresh(read, opts.customers, insert_s, read_s, done, int(r.info("memory")["used_memory"]))


def report(inc: Incremental | None, ref: Refresh | None, opts: LoyaltyOptions) -> str:
    lines = ["", "loyalty (measured on a shared, loaded 2-core machine: compare runs, not machines)"]
    if inc is not None:
        lines += [
            f"  incremental: {inc.orders:,} confirmed orders -> {inc.entries:,} ledger entries through one "
            f"{POOL} worker ({BY_NAME[POOL].pool} x{BY_NAME[POOL].concurrency})",
            f"    {inc.entries_per_s:,.0f} entries/s, {inc.orders_per_s:,.0f} orders/s "
            f"({inc.seconds:.1f}s from the first enqueue; enqueueing took {inc.enqueue_s:.1f}s)",
        ]
    if ref is not None:
        d = ref.refreshed
        other = d.seconds - ref.read_s
        lines += [
            f"  full refresh: {ref.entries:,} entries over {ref.customers:,} customers, {STORES} stores, {CITIES} "
            f"cities (inserted at {ref.entries / ref.insert_s:,.0f}/s)",
            f"    {d.seconds:.1f}s = {d.rows_per_s:,.0f} entries/s; {d.boards} boards, {d.members:,} board members; "
            f"Redis {ref.redis_bytes / 2**20:.0f} MiB",
            f"    of which reading the ledger from MongoDB alone: {ref.read_s:.1f}s "
            f"({ref.entries / ref.read_s:,.0f} entries/s); aggregating, ZADDs and the swap: ~{other:.1f}s",
        ]
    return "\n".join(lines)


def run(opts: LoyaltyOptions, tmp: Path, redis_port: int, mongo_port: int, *, phases: tuple[str, ...]) -> int:
    started: list[servers.Server] = []
    start = starter(started)
    try:
        database = start_data_servers(tmp, redis_port, mongo_port, start)
        cfg = settings()
        stores = _shops(database)
        inc = ref = None
        if "incremental" in phases:
            order_ids = _confirmed_orders(database, stores, opts)
            env = servers.process_env(cfg.redis_url, cfg.mongo_url, KIRANA_WORKER_LOGLEVEL="WARNING")
            worker = start(servers.Server(f"worker-{POOL}", worker_command(BY_NAME[POOL]), None, env=env,
                                          log=tmp / f"worker-{POOL}.log", cwd=ROOT))
            wait_worker(worker, cfg, POOL)
            log(f"{POOL} worker up; enqueueing {len(order_ids):,} leaderboards.sync_order tasks")
            inc = incremental(database, order_ids)
            worker.stop()
        if "refresh" in phases:
            ref = full_refresh(database, opts)
        print(report(inc, ref, opts), flush=True)
        return 0
    finally:
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:  # stop the others all the same
                log(f"could not stop {server.name}: {exc}")
