"""The load generator: C threads, each with its own keep-alive requests.Session."""

from __future__ import annotations

import json
import math
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

JSON_HEADERS = {"Content-Type": "application/json"}
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Phase:
    """What one run of requests saw; `latencies_ms` holds successful requests only."""

    sent: int
    wall_s: float
    latencies_ms: list[float]
    errors: Counter[str] = field(default_factory=Counter)
    # Location header of each successful answer (the order's URL), in request order.
    locations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated; NaN for no values."""
    if not values:
        return math.nan
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


class Client:
    """`concurrency` sessions that keep their connections across phases (warmup, then measured)."""

    def __init__(self, concurrency: int, stop: threading.Event) -> None:
        self.sessions = [requests.Session() for _ in range(concurrency)]
        self.stop = stop

    def close(self) -> None:
        for session in self.sessions:
            session.close()

    def run(self, url: str, bodies: Sequence[bytes], expect: int = 202) -> Phase:
        """POST every body to `url`, `concurrency` at a time; the clock starts when all threads are ready."""
        n = len(bodies)
        latencies: list[float | None] = [None] * n
        locations: list[str | None] = [None] * n
        errors: Counter[str] = Counter()
        lock = threading.Lock()
        next_job = iter(range(n))
        ready = threading.Barrier(len(self.sessions) + 1)

        def work(session: requests.Session) -> None:
            ready.wait()
            while not self.stop.is_set():
                with lock:
                    i = next(next_job, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    resp = session.post(url, data=bodies[i], headers=JSON_HEADERS, timeout=REQUEST_TIMEOUT_S)
                except requests.RequestException as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                    continue
                elapsed_ms = (time.perf_counter() - started) * 1000
                if resp.status_code != expect:
                    with lock:
                        errors[f"HTTP {resp.status_code}"] += 1
                    continue
                latencies[i] = elapsed_ms
                locations[i] = resp.headers.get("Location", "")

        threads = [threading.Thread(target=work, args=(s,), daemon=True, name=f"bench-client-{k}")
                   for k, s in enumerate(self.sessions)]
        for thread in threads:
            thread.start()
        ready.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - started
        return Phase(
            sent=n,
            wall_s=wall_s,
            latencies_ms=[x for x in latencies if x is not None],
            errors=errors,
            locations=[x for x in locations if x is not None],
        )


def order_bodies(n: int, store_id: str, skus: Sequence[str], rng: random.Random) -> list[bytes]:
    """`n` valid cash-on-delivery orders of 1-3 distinct SKUs, for random customers, as JSON bytes."""
    bodies = []
    for _ in range(n):
        picked = rng.sample(list(skus), rng.randint(1, 3))
        body = {
            "customer_id": f"bench-cust-{rng.randrange(1_000_000):06d}",
            "store_id": store_id,
            "items": [{"sku": sku, "qty": rng.randint(1, 3)} for sku in picked],
            "payment_method": "cod",
        }
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies
