"""The search phase: search and suggest latency under concurrent load, full rebuild times, index lag under updates.

1. Rebuild the seeded catalog's index (timed), then GET /api/v1/search and
   /api/v1/search/suggest from C keep-alive connections with a customer's
   token: queries from the relevance set (tests/data/search_relevance.json),
   suggestions from their first one to three letters.
2. Stream price changes (PATCH /api/v1/products/<id> as an admin) at a fixed
   rate while one search worker indexes them, sampling the lag gauge
   (`kirana_search_index_lag_seconds`, read from MongoDB) every 100 ms.
3. Generate a catalog of N products in a database of its own and time a full
   rebuild of it, plus a few searches on it.
"""

from __future__ import annotations

import functools
import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from pymongo.database import Database

from bench.load import percentile
from kirana import accounts, search, seed, tokens
from kirana import db as collections
from kirana.config import Settings
from kirana.permissions import Role
from kirana.search import dirty, index

POOL = "search"
GOAL_SEARCH_P99_MS = 30.0
GOAL_SUGGEST_P99_MS = 15.0
STORE_ID = seed.STORES[0]["_id"]
CASES = Path(__file__).resolve().parent.parent / "tests" / "data" / "search_relevance.json"
LAG_SAMPLE_S = 0.1
DRAIN_TIMEOUT_S = 60.0
UPDATE_THREADS = 8
# A store of the generated catalog: searches there are per store, as a shopper's are.
BIG_STORE = "store-gen-010"


def log(message: str) -> None:
    import sys

    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Latencies:
    ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.ms) / self.wall_s if self.wall_s else 0.0


@dataclass
class Result:
    search: Latencies
    suggest: Latencies
    reindex_seeded_ms: int
    seeded_products: int
    lag_samples_ms: list[int]
    updates_sent: int
    updates_per_s: float
    drained_after_ms: float
    reindex_big_ms: int = 0
    big_products: int = 0
    big_search_ms: list[float] = field(default_factory=list)
    big_index_bytes: int = 0
    concurrency: int = 0
    # The engine alone (kirana.search called in this process from `concurrency` threads): no HTTP, no auth.
    engine_search: Latencies = field(default_factory=Latencies)
    engine_suggest: Latencies = field(default_factory=Latencies)

    @property
    def failed(self) -> bool:
        return bool(self.search.errors or self.suggest.errors) or self.drained_after_ms < 0


def _token(database: Database, cfg: Settings, role: Role) -> str:
    user = accounts.register(database, f"bench-{role}-{time.time_ns()}@example.in", "bench passphrase 1234",
                             role=role)
    issued = tokens.open_session(database, user, two_factor=True, secret=cfg.token_secret, access_ttl_s=3600,
                                 refresh_ttl_s=3600)
    return issued.access_token


def _get_all(base_url: str, paths: list[str], headers: dict[str, str], concurrency: int) -> Latencies:
    """GET every path, `concurrency` keep-alive connections at a time."""
    parts = urlsplit(base_url)
    out = Latencies()
    lock = threading.Lock()
    jobs = iter(paths)
    ready = threading.Barrier(concurrency + 1)

    def work() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        ready.wait()
        while True:
            with lock:
                path = next(jobs, None)
            if path is None:
                conn.close()
                return
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
                with lock:
                    out.errors[type(exc).__name__] += 1
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if resp.status == 200:
                    out.ms.append(elapsed)
                else:
                    out.errors[f"HTTP {resp.status}"] += 1

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    out.wall_s = time.perf_counter() - started
    return out


def _in_process(calls: list[Callable[[], object]], concurrency: int) -> Latencies:
    out = Latencies()
    lock = threading.Lock()
    jobs = iter(calls)

    def work() -> None:
        while True:
            with lock:
                call = next(jobs, None)
            if call is None:
                return
            started = time.perf_counter()
            call()
            with lock:
                out.ms.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.wall_s = time.perf_counter() - started
    return out


def _engine_calls(database: Database, n: int, rng: random.Random) -> tuple[list[Callable[[], object]],
                                                                           list[Callable[[], object]]]:
    cases = json.loads(CASES.read_text())["cases"]
    searches: list[Callable[[], object]] = []
    suggests: list[Callable[[], object]] = []
    for _ in range(n):
        case = rng.choice(cases)
        filters = {"store_id": STORE_ID, **case.get("filters", {})}
        searches.append(functools.partial(search.search, database, case["q"], search.Filters(**filters),
                                          sort=case.get("sort", "relevance")))
        suggests.append(functools.partial(search.suggest, database, case["q"][: rng.randint(1, 3)]))
    return searches, suggests


def _queries(n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    cases = json.loads(CASES.read_text())["cases"]
    searches, suggests = [], []
    for _ in range(n):
        case = rng.choice(cases)
        params = {"q": case["q"], "store_id": case.get("filters", {}).get("store_id", STORE_ID), "per_page": 20}
        params.update({k: v for k, v in case.get("filters", {}).items() if k != "store_id"})
        if "sort" in case:
            params["sort"] = case["sort"]
        searches.append("/api/v1/search?" + urlencode(params))
        suggests.append("/api/v1/search/suggest?" + urlencode({"q": case["q"][: rng.randint(1, 3)]}))
    return searches, suggests


def _stream_updates(base_url: str, headers: dict[str, str], ids: list[str], *, rate: float, seconds: float,
                    rng: random.Random) -> int:
    """PATCH a new price into a random product `rate` times a second for `seconds`, from paced threads."""
    parts = urlsplit(base_url)
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    sent = [0]
    lock = threading.Lock()
    plan = [(start + i / rate, rng.choice(ids), rng.randint(1_000, 100_000)) for i in range(total)]
    jobs = iter(plan)

    def work() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                conn.close()
                return
            at, pid, price = job
            time.sleep(max(0.0, at - time.monotonic()))
            try:
                conn.request("PATCH", f"/api/v1/products/{pid}", body=json.dumps({"price_paise": price}),
                             headers={**headers, "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    with lock:
                        sent[0] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(UPDATE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent[0]


def _sample_lag(database: Database, stop: threading.Event, into: list[int]) -> None:
    while not stop.is_set():
        into.append(dirty.lag_ms(database))
        stop.wait(LAG_SAMPLE_S)


def generated_catalog(n: int, rng: random.Random) -> list[dict[str, object]]:
    """`n` products like the seed's: its lines in many made-up stores, with a variant word each."""
    base = seed.catalog()
    variants = ("Classic", "Premium", "Value", "Family", "Gold", "Lite", "Organic", "Fresh", "Special", "Select")
    products = []
    for i in range(n):
        item = base[i % len(base)]
        store = f"store-gen-{i // len(base):03d}"
        word = variants[rng.randrange(len(variants))]
        products.append({
            "_id": f"{store}:{item['sku']}", "store_id": store, "sku": item["sku"],
            "name": f"{item['name']} {word}", "brand": item["brand"], "category": item["category"],
            "unit": item["unit"], "price_paise": int(item["price_paise"]) + rng.randint(-500, 500) * 10,
            "mrp_paise": item["mrp_paise"], "stock": rng.randint(0, 200), "updated_at_ms": 0,
        })
    return products


def run_phase(*, base_url: str, database: Database, cfg: Settings, n: int, concurrency: int, update_rate: float,
              update_seconds: float, big: int, rng: random.Random) -> Result:
    db_seeded = database[collections.PRODUCTS].estimated_document_count()
    if db_seeded == 0:
        seed.seed(database)
    log("search: full rebuild of the seeded catalog")
    built = search.rebuild(database)
    log(f"search: rebuilt {built['docs']} products in {built['duration_ms']} ms")
    customer = {"Authorization": f"Bearer {_token(database, cfg, Role.CUSTOMER)}"}
    searches, suggests = _queries(n, rng)
    _get_all(base_url, searches[: min(200, n)], customer, concurrency)  # warm up
    log(f"search: {n} searches at concurrency {concurrency}")
    searched = _get_all(base_url, searches, customer, concurrency)
    log(f"search: {n} suggests at concurrency {concurrency}")
    suggested = _get_all(base_url, suggests, customer, concurrency)
    engine_searches, engine_suggests = _engine_calls(database, n, rng)
    log(f"search: the engine alone, {n} searches and suggests from {concurrency} threads in this process")
    engine_search = _in_process(engine_searches, concurrency)
    engine_suggest = _in_process(engine_suggests, concurrency)

    admin = {"Authorization": f"Bearer {_token(database, cfg, Role.ADMIN)}"}
    ids = [p["_id"] for p in database[collections.PRODUCTS].find({"store_id": STORE_ID}, {"_id": 1})]
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_lag, args=(database, stop, samples), daemon=True)
    log(f"search: {update_rate:.0f} price changes/s for {update_seconds:.0f}s, one search worker indexing")
    sampler.start()
    started = time.monotonic()
    sent = _stream_updates(base_url, admin, ids, rate=update_rate, seconds=update_seconds, rng=rng)
    streamed_s = time.monotonic() - started
    ended = time.monotonic()
    drained = -1.0
    while time.monotonic() - ended < DRAIN_TIMEOUT_S:
        if not dirty.pending(database):
            drained = (time.monotonic() - ended) * 1000
            break
        time.sleep(0.05)
    stop.set()
    sampler.join()

    result = Result(search=searched, suggest=suggested, reindex_seeded_ms=int(built["duration_ms"]),
                    seeded_products=int(built["docs"]), lag_samples_ms=samples, updates_sent=sent,
                    updates_per_s=sent / streamed_s if streamed_s else 0.0, drained_after_ms=drained,
                    concurrency=concurrency, engine_search=engine_search, engine_suggest=engine_suggest)
    if big:
        _big_catalog(database, big, rng, result)
    return result


def _big_catalog(database: Database, big: int, rng: random.Random, result: Result) -> None:
    """Generate `big` products in a database of their own, time a full rebuild, search one store; drop it all."""
    result.big_products = big
    other = database.client[f"{database.name}_search_{big}"]
    log(f"search: generating a {big}-product catalog")
    products = generated_catalog(big, rng)
    for i in range(0, len(products), 5000):
        other[collections.PRODUCTS].insert_many(products[i:i + 5000], ordered=False)
    log(f"search: full rebuild of {big} products")
    memory_before = int(index.client().info("memory")["used_memory"])
    built_big = search.rebuild(other)
    result.big_index_bytes = int(index.client().info("memory")["used_memory"]) - memory_before
    result.reindex_big_ms = int(built_big["duration_ms"])
    for q in ("atta", "toor dal", "surf exel", "aata", "biscuits", "alu bhujia", "oil", "amul"):
        t = time.perf_counter()
        search.search(other, q, search.Filters(store_id=BIG_STORE), per_page=20)
        result.big_search_ms.append((time.perf_counter() - t) * 1000)
    index.Index(index.client(), index.root_of(other)).retire(str(built_big["version"]))
    database.client.drop_database(other.name)


def report(result: Result) -> str:
    row = "{:<34}{:>9}{:>10}{:>10}{:>10}"
    lines = [
        f"kirana bench: search on the seeded catalog ({result.seeded_products} products), concurrency "
        f"{result.concurrency}",
        row.format("", "req/s", "p50 ms", "p99 ms", "goal p99"),
    ]
    for label, got, goal in (("GET /api/v1/search", result.search, GOAL_SEARCH_P99_MS),
                             ("GET /api/v1/search/suggest", result.suggest, GOAL_SUGGEST_P99_MS),
                             ("engine alone: search", result.engine_search, GOAL_SEARCH_P99_MS),
                             ("engine alone: suggest", result.engine_suggest, GOAL_SUGGEST_P99_MS)):
        errors = f"  ({sum(got.errors.values())} failed: {dict(got.errors)})" if got.errors else ""
        lines.append(row.format(label, f"{got.rate:.0f}", f"{percentile(got.ms, 50):.1f}",
                                f"{percentile(got.ms, 99):.1f}", f"< {goal:.0f}") + errors)
    lines.append(f"full rebuild, seeded catalog: {result.reindex_seeded_ms} ms for {result.seeded_products} products")
    if result.big_products:
        lines.append(f"full rebuild, generated catalog: {result.reindex_big_ms / 1000:.1f} s for "
                     f"{result.big_products} products ({result.big_products / max(result.reindex_big_ms, 1) * 1000:.0f}"
                     f" products/s); in-process search on it p50 {percentile(result.big_search_ms, 50):.1f} ms, "
                     f"max {max(result.big_search_ms):.1f} ms; Redis memory +{result.big_index_bytes / 1e6:.0f} MB")
    lag = result.lag_samples_ms
    drained = f"{result.drained_after_ms:.0f} ms" if result.drained_after_ms >= 0 else "NOT within 60 s"
    lines.append(f"index lag under {result.updates_per_s:.0f} updates/s ({result.updates_sent} sent): "
                 f"p50 {percentile(lag, 50):.0f} ms, p99 {percentile(lag, 99):.0f} ms, max {max(lag, default=0)} ms"
                 f" (sampled every {LAG_SAMPLE_S * 1000:.0f} ms); all indexed {drained} after the last update")
    return "\n".join(lines)
