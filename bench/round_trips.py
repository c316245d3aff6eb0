"""MongoDB commands and Redis round trips per order, counted where the code issues them.

One 2-item cash order and one 2-item UPI order go through the code paths the API and
the workers run, in this process, against the bench's own redis-server, nx-27017 and
Razorpay sandbox: the route's submit (`tasks.orders.submit`), each task body run
through Celery's `apply` (a real task request; its follow-ups are published to the
real broker), and then each follow-up the order's moves recorded. pymongo's command
monitoring counts MongoDB commands; a wrapper around redis-py's one send per round
trip (`Connection.send_packed_command`, a pipeline being one) counts Redis round
trips, kombu's publishes included. Not counted: the HTTP request's authentication,
and each message's fetch and ack by a worker's consumer (a BLMOVE, tasks/broker.py,
and two MULTI/EXECs per message, DESIGN.md), given per message beside.

The same run measures nx-27017's own rate for the single-document conditional update
the pipeline is made of, and what that rate allows at the measured commands per order.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis.connection
from pymongo import ReturnDocument, monitoring
from pymongo.database import Database

from stack import servers

# Issue #19's "today": measured on the pipeline before one write per transition.
BEFORE = {"cash": 15, "cash_api": 3, "cash_worker": 12}
GOAL = {"cash": 7, "upi": 12}
CONSUMER_ROUND_TRIPS_PER_MESSAGE = 3


@dataclass
class Tally:
    label: str = "-"
    mongo: Counter[str] = field(default_factory=Counter)
    mongo_by: dict[str, Counter[str]] = field(default_factory=dict)
    redis: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.label = label
        try:
            yield
        finally:
            self.label = "-"


TALLY = Tally()


class _Commands(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in {"endSessions", "hello", "isMaster", "ismaster", "ping"}:
            return
        with TALLY.lock:
            TALLY.mongo[TALLY.label] += 1
            collection = str(event.command.get(event.command_name, ""))
            TALLY.mongo_by.setdefault(TALLY.label, Counter())[f"{event.command_name} {collection}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def install() -> None:
    """Count from now on: a new MongoDB client with the listener, and every Redis send."""
    from kirana import db

    monitoring.register(_Commands())
    db._clients.clear()  # the next db.client() is built with the listener registered
    original = redis.connection.Connection.send_packed_command

    def counted(self: redis.connection.Connection, command: object, check_health: bool = True) -> None:
        with TALLY.lock:
            TALLY.redis[TALLY.label] += 1
            if isinstance(command, (list, tuple)) and any(b"LPUSH" in bytes(part)[:64] for part in command
                                                          if isinstance(part, (bytes, bytearray, memoryview))):
                TALLY.messages[TALLY.label] += 1
        original(self, command, check_health)

    redis.connection.Connection.send_packed_command = counted  # type: ignore[method-assign]


@dataclass(frozen=True)
class Path:
    """One order's counted steps, in order: (label, MongoDB commands, Redis round trips)."""

    method: str
    own: list[tuple[str, int, int]]
    follow_ups: list[tuple[str, int, int]]

    @property
    def own_mongo(self) -> int:
        return sum(m for _, m, _ in self.own)

    @property
    def own_redis(self) -> int:
        return sum(r for _, _, r in self.own)

    @property
    def all_mongo(self) -> int:
        return self.own_mongo + sum(m for _, m, _ in self.follow_ups)


def _run(label: str, call: object) -> tuple[str, int, int]:
    before_m, before_r = TALLY.mongo[label], TALLY.redis[label]
    with TALLY.step(label):
        call()  # type: ignore[operator]
    return label, TALLY.mongo[label] - before_m, TALLY.redis[label] - before_r


SENT: list[tuple[str, list[object], str]] = []


def _record_sends() -> None:
    """Keep what the dispatcher publishes (task, args, id), to run each follow-up afterwards."""
    from tasks import dispatch, reliability

    original = reliability.enqueue_intents

    def recorded(messages):  # type: ignore[no-untyped-def]
        SENT.extend((name, list(args), task_id) for name, args, task_id in messages)
        return original(messages)

    dispatch.reliability = type("R", (), {"enqueue_intents": staticmethod(recorded)})  # type: ignore[assignment]


def _follow_ups(order_id: str, own: set[str]) -> list[tuple[str, int, int]]:
    """Run each follow-up the dispatcher sent for the order (not its own path's tasks), once."""
    from tasks.app import app

    done: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for name, args, task_id in SENT:
        if not task_id.startswith(f"{order_id}:") or name in own or task_id in seen:
            continue
        seen.add(task_id)
        label = f"{name} ({task_id.split(':', 1)[1]})"
        done.append(_run(label, lambda n=name, a=args: app.tasks[n].apply(args=a)))
    # The coalesced indexer run its moves asked for (one run covers every order marked meanwhile).
    done.append(_run("search.index_dirty (one run, shared)", app.tasks["search.index_dirty"].apply))
    return done


def cash_order(database: Database, store_id: str, skus: list[str], customer: str) -> Path:
    from kirana.orders import NewOrder, OrderItem, PaymentMethod
    from tasks import orders as order_tasks

    new = NewOrder(customer, store_id, (OrderItem(skus[0], 1), OrderItem(skus[1], 2)), PaymentMethod.COD)
    placed: dict[str, str] = {}

    def submit() -> None:
        placed["id"] = order_tasks.submit(database, new, f"rt-{uuid.uuid4().hex}")[0]["_id"]

    own = [_run("api: POST /orders (submit)", submit)]
    own.append(_run("orders.process", lambda: order_tasks.process.apply(args=[placed["id"]])))
    return Path("cash", own, _follow_ups(placed["id"], {"orders.process"}))


def upi_order(database: Database, store_id: str, skus: list[str], customer: str, sandbox_url: str) -> Path:
    import requests

    from kirana import gateway, orders, payments
    from kirana.config import settings
    from kirana.orders import NewOrder, OrderItem, PaymentMethod
    from tasks import orders as order_tasks
    from tasks import payments as payment_tasks
    from tasks import reliability

    new = NewOrder(customer, store_id, (OrderItem(skus[0], 1), OrderItem(skus[1], 2)), PaymentMethod.UPI)
    placed: dict[str, str] = {}

    def submit() -> None:
        placed["id"] = order_tasks.submit(database, new, f"rt-{uuid.uuid4().hex}")[0]["_id"]

    own = [_run("api: POST /orders (submit)", submit)]
    oid = lambda: placed["id"]  # noqa: E731
    own.append(_run("orders.process", lambda: order_tasks.process.apply(args=[oid()])))
    own.append(_run("payments.create_order", lambda: payment_tasks.create_order.apply(args=[oid(), 1])))
    rzp_order = orders.get(database, oid())["payment"]["razorpay_order_id"]
    paid = requests.post(f"{sandbox_url}/_sandbox/checkout/{rzp_order}/upi", timeout=10,
                         json={"flow": "intent", "vpa": "bench@okicici", "outcome": "success"}).json()
    assert gateway.checkout_signature_valid(settings().razorpay_key_secret, paid["razorpay_order_id"],
                                            paid["razorpay_payment_id"], paid["razorpay_signature"])

    def verify() -> None:  # api/payments.py verify, past its signature check
        attempt = payments.by_gateway_order(database, rzp_order)
        payments.record_checkout(database, rzp_order, paid["razorpay_payment_id"], attempt)
        reliability.enqueue(payment_tasks.capture, [attempt["_id"]])

    own.append(_run("api: POST /payments/verify", verify))
    own.append(_run("payments.capture", lambda: payment_tasks.capture.apply(args=[f"{oid()}:p1"])))
    return Path("upi", own, _follow_ups(oid(), {"orders.process", "payments.create_order", "payments.capture"}))


def update_rate(database: Database, seconds: float = 3.0, threads: int = 4) -> float:
    """nx-27017's rate for a guarded find_one_and_update of one document by id ($set, $inc), ops/s."""
    docs = database["bench_updates"]
    docs.delete_many({})
    docs.insert_many([{"_id": f"d{i}", "status": "a", "n": 0} for i in range(1000)])
    stop = time.monotonic() + seconds
    done = [0] * threads

    def loop(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            docs.find_one_and_update({"_id": f"d{i % 1000}", "status": "a"},
                                     {"$set": {f"history.s{i % 7}": {"at_ms": i}}, "$inc": {"n": 1}},
                                     return_document=ReturnDocument.AFTER)
            done[k] += 1
            i += threads

    started = time.monotonic()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rate = sum(done) / (time.monotonic() - started)
    docs.drop()
    return rate


def report(cash: Path, upi: Path, updates_per_s: float, confirmed_per_s: float | None) -> str:
    lines = ["round trips per 2-item order (counted in-process; bench/round_trips.py)",
             f"{'step':<58}{'MongoDB':>9}{'Redis':>7}"]
    for path in (cash, upi):
        lines.append(f"-- {path.method}: the order's own path")
        lines += [f"  {label:<56}{m:>9}{r:>7}" for label, m, r in path.own]
        goal = GOAL[path.method]
        verdict = "meets" if path.own_mongo <= goal else "misses"
        before = f"; before: {BEFORE['cash']} ({BEFORE['cash_api']} API + {BEFORE['cash_worker']} worker)" \
            if path.method == "cash" else ""
        lines.append(f"  {'= the order path':<56}{path.own_mongo:>9}{path.own_redis:>7}"
                     f"   goal <= {goal}: {verdict}{before}")
        lines.append(f"-- {path.method}: its follow-ups (each once; the indexer run is shared by every order "
                     f"it covers)")
        lines += [f"  {label:<56}{m:>9}{r:>7}" for label, m, r in path.follow_ups]
        lines.append(f"  {'= order path + follow-ups':<56}{path.all_mongo:>9}")
    lines.append(f"(each task message also costs its worker's consumer ~{CONSUMER_ROUND_TRIPS_PER_MESSAGE} Redis "
                 f"round trips to fetch and ack, not counted above)")
    bound = updates_per_s / cash.own_mongo
    lines.append(f"{servers.test_mongo_name()} single-document conditional updates: {updates_per_s:,.0f}/s "
                 f"(4 threads, 3 s) -> at "
                 f"{cash.own_mongo} commands per cash order it allows {bound:,.0f} orders/s")
    if confirmed_per_s:
        share = confirmed_per_s / bound
        lines.append(f"the orders pool confirmed {confirmed_per_s:.1f} orders/s = {share:.0%} of that bound "
                     f"(goal >= 70%: {'meets' if share >= 0.7 else 'misses'})")
    return "\n".join(lines)


def run_phase(database: Database, store_id: str, skus: list[str], sandbox_url: str,
              confirmed_per_s: float | None) -> str:
    install()
    _record_sends()
    from kirana import db
    from tasks.app import app

    app.loader.import_default_modules()

    database = db.database()  # the counted client
    customer = f"rt-{uuid.uuid4().hex[:8]}"
    database["users"].insert_one({"_id": customer, "email": f"{customer}@example.in"})
    # One uncounted order of each kind first: connections, queue declarations, the customer's
    # Razorpay customer id (made once per customer) are not what an order costs.
    cash_order(database, store_id, skus, customer)
    upi_order(database, store_id, skus, customer, sandbox_url)
    cash = cash_order(database, store_id, skus, customer)
    upi = upi_order(database, store_id, skus, customer, sandbox_url)
    return report(cash, upi, update_rate(database), confirmed_per_s)
