"""Issue 20, item 7: password hashing under concurrent registrations, measured on the real API.

argon2id (the library's defaults) takes 64 MiB per hash. An API worker has 8
request threads, so 32 registrations at once used to put up to 8 hashes in
each worker at the same time. PASSWORD_HASHES_AT_ONCE bounds that per process;
this test prints the API workers' peak RSS both ways and holds the bound.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.harness import api_server

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
ARGON2_MIB = 64
CONCURRENT = 32


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _workers(master: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _peak_while_registering(stack, hashes_at_once: int) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(the largest worker's RSS before, its peak during, the answers that were 202) for CONCURRENT registrations."""
    with api_server(stack.run_dir, stack.cfg, name=f"api-hashes-{hashes_at_once}",
                    PASSWORD_HASHES_AT_ONCE=str(hashes_at_once)) as api:
        url = f"http://127.0.0.1:{api.port}/api/v1/auth/register"
        assert api.proc is not None
        workers = _workers(api.proc.pid)
        # Each worker hashes once before the measurement, so its baseline includes argon2 and the app.
        for _ in range(4):
            requests.post(url, json={"email": f"warm-{uuid.uuid4().hex}@example.in", "password": "a passphrase 1234"},
                          timeout=30)
        before = max(_rss(p) for p in workers)
        peak, stop = [before], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], *(_rss(p) for p in workers))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(CONCURRENT) as pool:
            codes = list(pool.map(lambda i: requests.post(url, timeout=60, json={
                "email": f"burst-{i}-{uuid.uuid4().hex}@example.in", "password": "a passphrase 1234"}).status_code,
                range(CONCURRENT)))
        stop.set()
        sampler.join()
        return before, peak[0], codes.count(202)


def test_concurrent_registrations_hash_at_most_the_bound_at_once_per_worker(stack) -> None:  # type: ignore[no-untyped-def]
    bounded_before, bounded_peak, bounded_ok = _peak_while_registering(stack, 2)
    free_before, free_peak, free_ok = _peak_while_registering(stack, 64)

    print(f"\n{CONCURRENT} concurrent registrations, API {stack.cfg.api_workers} workers x {stack.cfg.api_threads} "
          f"threads, argon2id {ARGON2_MIB} MiB per hash; largest worker RSS before -> peak:\n"
          f"  PASSWORD_HASHES_AT_ONCE=2:  {bounded_before / MIB:.0f} -> {bounded_peak / MIB:.0f} MiB "
          f"(+{(bounded_peak - bounded_before) / MIB:.0f})\n"
          f"  unbounded (64):             {free_before / MIB:.0f} -> {free_peak / MIB:.0f} MiB "
          f"(+{(free_peak - free_before) / MIB:.0f})")
    assert bounded_ok == free_ok == CONCURRENT
    # Two hashes at a time: at most two argon2 buffers above the worker's own size (slack for the
    # requests' own memory).
    assert bounded_peak - bounded_before <= (2 * ARGON2_MIB + 24) * MIB
    # Unbounded, the same burst holds several buffers at once in a worker: the bound is what saves it.
    assert free_peak - free_before > (2 * ARGON2_MIB + 24) * MIB


def test_registrations_past_the_hourly_limit_of_an_address_get_429_with_retry_after(stack) -> None:  # type: ignore[no-untyped-def]
    from kirana import redis_conn, throttle

    r = redis_conn.client()
    for key in r.scan_iter(f"{throttle.PREFIX}:register:*"):  # this hour's count of 127.0.0.1 so far
        r.delete(key)
    with api_server(stack.run_dir, stack.cfg, name="api-register-limit", REGISTER_PER_ADDRESS_PER_HOUR="3") as api:
        url = f"http://127.0.0.1:{api.port}/api/v1/auth/register"
        answers = [requests.post(url, json={"email": f"limit-{uuid.uuid4().hex}@example.in",
                                            "password": "a passphrase 1234"}, timeout=30) for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    refused = answers[-1]
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert refused.json()["type"].endswith("too-many-registrations")
