"""`python -m client.demo`: a customer places a few hundred mixed orders against a running stack.

    make run                       # in one terminal
    python -m client.demo          # in another (make demo)

Registers a customer, submits orders concurrently through the typed client (COD,
UPI and card; some cards and UPI payments fail, a few orders name a product the
store does not have), acts as the customer at the Razorpay sandbox's checkout,
shows progress live and prints a table: confirmed, rejected, payment failed, and
time from submit to confirmed (p50/p99).

Environment: KIRANA_URL (default http://127.0.0.1:8000) and RAZORPAY_BASE_URL
(the sandbox, default http://127.0.0.1:9100), as `make run` starts them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from client.api import ApiError, KiranaClient
from client.models import OrderOut, ProductOut

PASSWORD = "demo passphrase for kirana"
SETTLED = {"confirmed", "rejected", "payment_failed", "expired", "cancelled"}
OUTCOMES = ("confirmed", "rejected", "payment_failed", "other")


@dataclass(frozen=True)
class Plan:
    """What one order of the demo does: how it pays and whether it is meant to fail."""

    method: str  # cod | upi | card
    pay_fails: bool = False
    unknown_sku: bool = False


def plans(count: int, seed: int) -> list[Plan]:
    """A fixed mix: ~40% COD, ~35% UPI (1 in 10 fails), ~25% card (1 in 5 fails), ~1 in 20 rejected.

    The first few are one of each kind, so even a small run shows every outcome.
    """
    rng = random.Random(seed)
    made = [Plan("cod"), Plan("upi"), Plan("card"), Plan("card", pay_fails=True), Plan("cod", unknown_sku=True)]
    while len(made) < count:
        roll = rng.random()
        method = "cod" if roll < 0.40 else "upi" if roll < 0.75 else "card"
        made.append(Plan(method, pay_fails=method != "cod" and rng.random() < (0.1 if method == "upi" else 0.2),
                         unknown_sku=rng.random() < 0.05))
    return made[:count]


@dataclass
class Result:
    plan: Plan
    outcome: str
    order_id: str | None = None
    seconds_to_confirm: float | None = None
    note: str = ""


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def percentile(self, p: float) -> float | None:
        times = sorted(r.seconds_to_confirm for r in self.results if r.seconds_to_confirm is not None)
        if not times:
            return None
        if len(times) == 1:
            return times[0]
        return statistics.quantiles(times, n=100, method="inclusive")[int(p) - 1]


class Sandbox:
    """The customer's side of Razorpay Checkout, in the local sandbox."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.local = threading.local()

    def _post(self, path: str, body: dict) -> dict:
        http = getattr(self.local, "http", None)
        if http is None:
            http = self.local.http = requests.Session()
        resp = http.post(f"{self.base_url}/_sandbox/checkout{path}", json=body, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def pay(self, method: str, rzp_order_id: str, *, fail: bool) -> dict:
        if method == "upi":
            return self._post(f"/{rzp_order_id}/upi", {"flow": "intent", "vpa": "demo@okicici",
                                                     "outcome": "failure" if fail else "success"})
        return self._post(f"/{rzp_order_id}/{'fail' if fail else 'authorize'}", {"method": "card"})


class Demo:
    def __init__(self, base_url: str, sandbox_url: str, *, seed: int = 7, timeout_s: float = 60.0) -> None:
        self.base_url = base_url
        self.sandbox = Sandbox(sandbox_url)
        self.timeout_s = timeout_s
        self.seed = seed
        self.local = threading.local()
        self.login = None

    def client(self) -> KiranaClient:
        """One client per thread (a requests.Session is not shared across threads), one customer."""
        kirana = getattr(self.local, "kirana", None)
        if kirana is None:
            kirana = self.local.kirana = KiranaClient(self.base_url)
            kirana.tokens = self.login
        return kirana

    def sign_up(self) -> str:
        email = f"demo-{uuid.uuid4().hex[:10]}@example.in"
        kirana = KiranaClient(self.base_url)
        kirana.register(email, PASSWORD)
        self.login = kirana.login(email, PASSWORD)
        return email

    def catalog(self) -> dict[str, list[ProductOut]]:
        by_store: dict[str, list[ProductOut]] = {}
        kirana, offset = self.client(), 0
        while True:
            page = kirana.products(limit=200, offset=offset)
            for product in page.items:
                if product.stock >= 5:
                    by_store.setdefault(product.store_id, []).append(product)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return by_store

    def one(self, plan: Plan, store_id: str, products: list[ProductOut], rng: random.Random) -> Result:
        kirana = self.client()
        picked = rng.sample(products, k=min(len(products), rng.randint(1, 3)))
        items = [(p.sku, rng.randint(1, 2)) for p in picked]
        if plan.unknown_sku:
            items[0] = (f"NO-SUCH-{uuid.uuid4().hex[:6].upper()}", 1)
        started = time.monotonic()
        try:
            order = kirana.submit_order(store_id, items, plan.method)
            order = self.wait(kirana, order, lambda o: o.status in SETTLED or o.status == "awaiting_payment")
            if order.status == "awaiting_payment" and order.payment is not None:
                paid = self.sandbox.pay(plan.method, order.payment.razorpay_order_id, fail=plan.pay_fails)
                if "razorpay_signature" in paid:
                    kirana.verify_payment(paid["razorpay_order_id"], paid["razorpay_payment_id"],
                                          paid["razorpay_signature"])
                # A failure reaches Kirana by the payment.failed webhook.
                order = self.wait(kirana, order, lambda o: o.status in SETTLED)
        except (ApiError, requests.RequestException) as exc:
            return Result(plan, "other", note=f"{type(exc).__name__}: {exc}")
        took = time.monotonic() - started
        outcome = order.status if order.status in OUTCOMES else "other"
        return Result(plan, outcome, order.id, took if outcome == "confirmed" else None,
                      note="" if outcome != "other" else f"ended {order.status}")

    def wait(self, kirana: KiranaClient, order: OrderOut, until: Callable[[OrderOut], bool]) -> OrderOut:
        return kirana.wait_order(order.id, until, timeout_s=self.timeout_s, poll_s=0.15)

    def run(self, count: int, *, concurrency: int = 8, console: Console | None = None) -> Summary:
        console = console or Console()
        email = self.sign_up()
        stores = self.catalog()
        if not stores:
            raise SystemExit("no products in stock: run `make seed` (make run seeds the catalog)")
        store_ids = sorted(stores)
        console.print(f"customer {email}; {sum(map(len, stores.values()))} products in {len(stores)} stores")
        summary = Summary()
        started = time.monotonic()
        columns = (TextColumn("[bold]orders"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as progress, ThreadPoolExecutor(concurrency) as pool:
            task = progress.add_task("", total=count)
            futures = []
            for i, plan in enumerate(plans(count, self.seed)):
                store = store_ids[i % len(store_ids)]
                rng = random.Random(self.seed * 100_003 + i)
                futures.append(pool.submit(self.one, plan, store, stores[store], rng))
            for future in as_completed(futures):
                summary.results.append(future.result())
                counts = summary.counts
                progress.update(task, advance=1, description="  ".join(f"{name} {counts[name]}" for name in OUTCOMES))
        summary.wall_s = time.monotonic() - started
        return summary


def table(summary: Summary) -> Table:
    counts = summary.counts
    out = Table(title=f"{len(summary.results)} orders in {summary.wall_s:.1f} s")
    out.add_column("outcome")
    out.add_column("orders", justify="right")
    out.add_column("cod / upi / card", justify="right")
    for name in OUTCOMES:
        methods = Counter(r.plan.method for r in summary.results if r.outcome == name)
        out.add_row(name.replace("_", " "), str(counts[name]),
                    f"{methods['cod']} / {methods['upi']} / {methods['card']}")
    p50, p99 = summary.percentile(50), summary.percentile(99)
    out.add_section()
    out.add_row("time to confirm p50", "-" if p50 is None else f"{p50 * 1000:.0f} ms", "")
    out.add_row("time to confirm p99", "-" if p99 is None else f"{p99 * 1000:.0f} ms", "")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--base-url", default=os.environ.get("KIRANA_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--sandbox-url", default=os.environ.get("RAZORPAY_BASE_URL", "http://127.0.0.1:9100"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    console = Console()
    summary = Demo(args.base_url, args.sandbox_url, seed=args.seed).run(args.orders, concurrency=args.concurrency,
                                                                      console=console)
    console.print(table(summary))
    for result in [r for r in summary.results if r.outcome == "other"][:5]:
        console.print(f"[yellow]{result.order_id or '-'}: {result.note}")
    return 0 if summary.counts["other"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
