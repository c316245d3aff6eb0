"""The load generator: C keep-alive connections, as C threads (requests or bare http.client) or on one asyncio loop.

On 2 cores the load generator's CPU is taken from the servers it measures, so
the leaner the better: per request, requests.Session costs ~2 ms of CPU,
http.client from a thread ~0.2 ms, and the asyncio "raw" transport (prebuilt
request bytes, the answer's status line and Content-Length read by hand) less
again.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import random
import select
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

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
    # What `classify` said of each successful answer (e.g. a webhook's "accepted"/"duplicate").
    outcomes: Counter[str] = field(default_factory=Counter)

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


class RequestsSession:
    """A keep-alive requests.Session."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        resp = self.session.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
        return resp.status_code, resp.headers.get("Location", ""), resp.content

    def close(self) -> None:
        self.session.close()


class HttpSession:
    """Keep-alive http.client connections, one per host:port: what RequestsSession does for a fraction of its CPU.

    On 2 cores the load generator's CPU is taken from the servers it measures.
    A connection the server closed while idle (gunicorn's keep-alive is 2 s)
    is noticed before it is reused, as urllib3 does, and opened again.
    """

    def __init__(self) -> None:
        self.conns: dict[str, http.client.HTTPConnection] = {}
        self._split: dict[str, SplitResult] = {}

    def _conn(self, parts: SplitResult) -> http.client.HTTPConnection:
        conn = self.conns.get(parts.netloc)
        if conn is not None and conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            conn.close()  # readable while idle: closed by the server (or junk): start afresh
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT_S)
            self.conns[parts.netloc] = conn
        return conn

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        parts = self._split.get(url)
        if parts is None:
            parts = self._split[url] = urlsplit(url)
        conn = self._conn(parts)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        return resp.status, resp.getheader("Location", "") or "", data

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


TRANSPORTS = {"requests": RequestsSession, "http": HttpSession}


class RawAnswerError(Exception):
    """An answer the raw transport does not read (chunked, or no status line)."""


def raw_request(parts: SplitResult, body: bytes, headers: dict[str, str]) -> bytes:
    """One POST as the bytes that go on the wire (HTTP/1.1, keep-alive)."""
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def raw_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       request: bytes) -> tuple[int, str, bytes, bool]:
    """Send `request`, read its answer: (status, Location, body, whether the server closes the connection)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or len(head) < 12:
        raise RawAnswerError(f"not an HTTP answer: {head[:40]!r}")
    status = int(head[9:12])
    length, location, close = 0, "", False
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"location":
            location = value.strip().decode("latin-1")
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            raise RawAnswerError("a chunked answer (the raw transport reads Content-Length only)")
    content = await reader.readexactly(length) if length else b""
    return status, location, content, close


class Client:
    """`concurrency` keep-alive connections that POST bodies to a URL and time each answer.

    `transport` is "requests" (requests.Session per thread), "http" (bare
    http.client per thread, far less CPU per request) or "raw" (asyncio
    connections on one thread: the least CPU; they are opened afresh by each
    run, before its clock starts).
    """

    def __init__(self, concurrency: int, stop: threading.Event, transport: str = "requests") -> None:
        if transport not in (*TRANSPORTS, "raw"):
            raise ValueError(f"unknown transport {transport!r}")
        self.transport = transport
        self.concurrency = concurrency
        self.sessions = [TRANSPORTS[transport]() for _ in range(concurrency)] if transport in TRANSPORTS else []
        self.stop = stop

    def close(self) -> None:
        for session in self.sessions:
            session.close()

    def run(self, url: str, bodies: Sequence[bytes], expect: int = 202,
            headers: Sequence[dict[str, str]] | None = None,
            classify: Callable[[bytes], str] | None = None, *, rate: float | None = None) -> Phase:
        """POST every body to `url`, `concurrency` at a time; the clock starts when all threads are ready.

        `headers[i]` (built beforehand) goes with `bodies[i]`; `classify` labels each successful answer by its body.
        With `rate` (requests/s), request i is due at start + i/rate (an open loop) and its latency counts
        from when it was due, so a server that falls behind shows it in the latencies instead of being
        offered less (as long as `concurrency` threads suffice to keep the rate).
        """
        n = len(bodies)
        if headers is not None and len(headers) != n:
            raise ValueError(f"{len(headers)} header sets for {n} bodies")
        tally = _Tally(n, expect, classify)
        if self.transport == "raw":
            parts = urlsplit(url)
            wire = [raw_request(parts, body, JSON_HEADERS if headers is None else headers[i])
                    for i, body in enumerate(bodies)]
            return asyncio.run(_RawRun(parts, wire, tally, rate=rate, stop=self.stop).run(self.concurrency))
        lock = threading.Lock()
        next_job = iter(range(n))
        clock = [0.0]
        ready = threading.Barrier(len(self.sessions) + 1, action=lambda: clock.__setitem__(0, time.perf_counter()))

        def work(session: RequestsSession | HttpSession) -> None:
            ready.wait()
            while not self.stop.is_set():
                with lock:
                    i = next(next_job, None)
                if i is None:
                    return
                if rate:
                    started = clock[0] + i / rate
                    if (ahead := started - time.perf_counter()) > 0:
                        time.sleep(ahead)
                else:
                    started = time.perf_counter()
                try:
                    status, location, content = session.post(
                        url, bodies[i], JSON_HEADERS if headers is None else headers[i])
                except (requests.RequestException, OSError, http.client.HTTPException) as exc:
                    tally.error(type(exc).__name__)
                    continue
                tally.answer(i, started, status, location, content)

        threads = [threading.Thread(target=work, args=(s,), daemon=True, name=f"bench-client-{k}")
                   for k, s in enumerate(self.sessions)]
        for thread in threads:
            thread.start()
        ready.wait()
        started = clock[0]
        for thread in threads:
            thread.join()
        return tally.phase(time.perf_counter() - started)


class _Tally:
    """One run's answers: each job's latency, Location and label, the errors by kind; then its Phase."""

    def __init__(self, n: int, expect: int, classify: Callable[[bytes], str] | None) -> None:
        self.n, self.expect, self.classify = n, expect, classify
        self.latencies: list[float | None] = [None] * n
        self.locations: list[str | None] = [None] * n
        self.labels: list[str | None] = [None] * n
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()  # the threaded transports count errors from many threads

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def answer(self, i: int, started: float, status: int, location: str, content: bytes) -> None:
        """Job `i` was answered: its latency since `started`, or an error if the status is not the one expected."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        if status != self.expect:
            self.error(f"HTTP {status}")
            return
        self.latencies[i] = elapsed_ms
        self.locations[i] = location
        if self.classify is not None:
            self.labels[i] = self.classify(content)

    def phase(self, wall_s: float) -> Phase:
        return Phase(
            sent=self.n,
            wall_s=wall_s,
            latencies_ms=[x for x in self.latencies if x is not None],
            errors=self.errors,
            locations=[x for x in self.locations if x is not None],
            outcomes=Counter(x for x in self.labels if x is not None),
        )


class _RawRun:
    """`Client.run` on one asyncio loop: the same jobs, latencies and errors, a fraction of the CPU."""

    def __init__(self, parts: SplitResult, wire: list[bytes], tally: _Tally, *, rate: float | None,
                 stop: threading.Event) -> None:
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.wire, self.tally, self.rate, self.stop = wire, tally, rate, stop
        self.next_job = iter(range(len(wire)))
        self.clock = 0.0

    async def run(self, concurrency: int) -> Phase:
        conns = [await asyncio.open_connection(self.host, self.port) for _ in range(concurrency)]
        self.clock = time.perf_counter()
        try:
            await asyncio.gather(*(self.work(conns, k) for k in range(concurrency)))
            wall_s = time.perf_counter() - self.clock
        finally:
            for _, writer in conns:
                writer.close()
        return self.tally.phase(wall_s)

    async def work(self, conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], k: int) -> None:
        while not self.stop.is_set():
            i = next(self.next_job, None)
            if i is None:
                return
            if self.rate:
                started = self.clock + i / self.rate
                if (ahead := started - time.perf_counter()) > 0:
                    await asyncio.sleep(ahead)
            else:
                started = time.perf_counter()
            reader, writer = conns[k]
            answer = None
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    answer = await raw_exchange(reader, writer, self.wire[i])
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    RawAnswerError) as exc:
                self.tally.error(type(exc).__name__)
            if answer is None or answer[3]:  # lost, or the server is done with this connection: open another
                writer.close()
                try:
                    conns[k] = await asyncio.open_connection(self.host, self.port)
                except OSError as exc:
                    self.tally.error(type(exc).__name__)
                    return
            if answer is not None:
                status, location, content, _ = answer
                self.tally.answer(i, started, status, location, content)

def order_bodies(n: int, store_id: str, skus: Sequence[str], rng: random.Random) -> list[bytes]:
    """`n` valid cash-on-delivery orders of 1-3 distinct SKUs, as JSON bytes (the customer is the token's)."""
    bodies = []
    for _ in range(n):
        picked = rng.sample(list(skus), rng.randint(1, 3))
        body = {
            "store_id": store_id,
            "items": [{"sku": sku, "qty": rng.randint(1, 3)} for sku in picked],
            "payment_method": "cod",
        }
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies
