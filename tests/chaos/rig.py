"""A private Kirana stack per chaos case, and a paced order load to run through it.

Each case owns every server it hurts: its own redis-server (AOF), nx-27017,
the API under gunicorn, the Razorpay sandbox, the orders/payments/webhooks/audit
pools and the outbox relay, all on free ports. The test process's own
kirana.config points at the session's servers (tests/conftest.py), so nothing
here calls kirana.db.database() or tasks.app: the stack's MongoDB, Redis and
broker are reached with clients made here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import pymongo.errors
import redis
import requests
from celery import Celery
from kombu import Exchange
from kombu import Queue as KombuQueue
from pymongo.database import Database

from kirana import db as collections
from kirana import seed
from kirana.clock import now_ms
from kirana.config import Settings, settings
from stack import servers
from stack.commands import api_command, outbox_relay_command, sandbox_command, sandbox_env
from tasks.queues import ROUTES, Queue, inflight_consumers_key, inflight_key
from workers.pools import BY_NAME, worker_command

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
# States an order never leaves on its own.
FINAL = frozenset({"confirmed", "rejected", "expired", "cancelled", "refunded"})
POOLS = ("orders", "payments", "webhooks", "audit")
# Longer than any task's hard time limit (payments' 40 s is the longest): an unacked message older than this,
# with no retry ETA ahead, is no longer being worked on.
IN_HAND_S = 45.0
HOST = socket.gethostname()

CHILD_ENV = {
    "WORKER_HEARTBEAT_S": "1",
    "KIRANA_WORKER_LOGLEVEL": "WARNING",
    "REDELIVERY_CAP": "3",
    "LOGIN_MAX_FAILURES_ADDRESS": "100000",
    "REGISTER_PER_ADDRESS_PER_HOUR": "100000",
    # Used only when a case acts as beat (wait_final's sweeps): orders unfinished for 5 s are re-enqueued.
    "STUCK_ORDER_AFTER_S": "5",
    "PAYMENT_RECONCILE_AFTER_S": "1",
    # Production's retry budget, not the suite's quick 3 (tests/conftest.py): a case injects a real
    # outage, and with full jitter three quick retries of 2 s each can all land inside a 5 s one
    # (a capture was dead-lettered that way in CI on 2026-12-03).
    "TASK_MAX_RETRIES": str(Settings().task_max_retries),
}


def wait_until(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll `check` until true; the time it took. Every wait of the suite has a deadline."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        with contextlib.suppress(pymongo.errors.PyMongoError, redis.exceptions.RedisError, requests.RequestException):
            if check():
                return time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class ChaosStack:
    """Every process of one Kirana, private to one case; a context manager that stops them all."""

    def __init__(self, run_dir: Path, *, pools: Iterable[str] = POOLS,
                 pool_env: dict[str, dict[str, str]] | None = None, **env: str) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "redis").mkdir(exist_ok=True)
        (run_dir / "mongo").mkdir(exist_ok=True)
        self.pools = tuple(pools)
        self.pool_env = pool_env or {}
        redis_port, mongo_port, self.api_port, sandbox_port = (servers.free_port() for _ in range(4))
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.mongo_url = f"mongodb://127.0.0.1:{mongo_port}"
        self.db_name = "kirana_chaos"
        self.cfg = dataclasses.replace(settings(), redis_url=self.redis_url, mongo_url=self.mongo_url,
                                       mongo_db=self.db_name, razorpay_base_url=f"http://127.0.0.1:{sandbox_port}")
        self.env = servers.process_env(self.redis_url, self.mongo_url, MONGO_DB=self.db_name,
                                       RAZORPAY_BASE_URL=self.cfg.razorpay_base_url, **CHILD_ENV, **env)
        self.redis = servers.Server("redis", servers.redis_command(redis_port, run_dir / "redis"), redis_port,
                                    log=run_dir / "redis.log", cwd=ROOT)
        self.mongo = servers.Server("mongo", servers.test_mongo_command(mongo_port, run_dir / "mongo"), mongo_port,
                                    log=run_dir / "mongo.out", cwd=ROOT)
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.api = servers.Server("api", api_command(self.cfg, port=self.api_port), self.api_port, env=self.env,
                                  log=run_dir / "api.log", cwd=ROOT)
        self.sandbox_url = self.cfg.razorpay_base_url
        self.sandbox_server = servers.Server(
            "razorpay-sandbox", sandbox_command(self.cfg, webhook_url=f"{self.base_url}/webhooks/razorpay"),
            sandbox_port, env={**self.env, **sandbox_env(self.cfg)}, log=run_dir / "razorpay-sandbox.log", cwd=ROOT)
        self.relay = servers.Server("outbox-relay", outbox_relay_command(), None, env=self.env,
                                    log=run_dir / "outbox-relay.log", cwd=ROOT)
        self.workers: list[Worker] = []
        self.loads: list[Load] = []
        self._mongo: pymongo.MongoClient | None = None
        self._redis: redis.Redis | None = None
        self._celery: Celery | None = None
        self._stopped = False

    # --- clients of this stack -----------------------------------------------------------

    @property
    def db(self) -> Database:
        if self._mongo is None:
            self._mongo = pymongo.MongoClient(self.mongo_url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000,
                                              socketTimeoutMS=10_000, tz_aware=True)
        return self._mongo[self.db_name]

    @property
    def r(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    @property
    def broker(self) -> Celery:
        """A Celery client of this stack's broker, with the queues and routes of tasks/app.py."""
        if self._celery is None:
            app = Celery("kirana-chaos", broker=self.redis_url, set_as_current=False)
            app.conf.update(
                task_queues=[KombuQueue(q.value, Exchange(q.value, type="direct"), routing_key=q.value) for q in Queue],
                task_routes=ROUTES, task_default_queue=Queue.ORDERS.value, task_create_missing_queues=False,
                task_serializer="json",
                accept_content=["json"], broker_connection_timeout=2.0,
                broker_transport_options={"socket_timeout": 2.0, "socket_connect_timeout": 2.0},
            )
            self._celery = app
        return self._celery

    def send(self, task: str, *args: Any, task_id: str | None = None) -> str:
        return str(self.broker.send_task(task, args=list(args), task_id=task_id).id)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    # --- processes -------------------------------------------------------------------------

    def start_worker(self, pool: str, *, concurrency: int | None = None, **env: str) -> Worker:
        n = sum(w.pool == pool for w in self.workers)
        name = f"{pool}@chaos{n}.{HOST}"
        argv = worker_command(BY_NAME[pool])
        # KIRANA_CHAOS_WORKER_LOGLEVEL=INFO (in the test's environment) logs every task, to debug a case.
        argv[argv.index("-l") + 1] = os.environ.get("KIRANA_CHAOS_WORKER_LOGLEVEL", "WARNING")
        argv[argv.index("-n") + 1] = name
        if concurrency is not None:
            argv[argv.index("-c") + 1] = str(concurrency)
        env = {**self.env, **self.pool_env.get(pool, {}), **env}
        server = servers.Server(f"worker-{pool}-{n}", argv, None, env=env, log=self.run_dir / f"worker-{pool}-{n}.log",
                                cwd=ROOT)
        worker = Worker(pool, name, server, now_ms())
        server.start()
        self.workers.append(worker)
        return worker

    def wait_alive(self, workers: Iterable[Worker], timeout: float = 60.0) -> None:
        """Until each worker has sent a heartbeat since it started (it is connected and consuming)."""
        pending = list(workers)

        def beating() -> bool:
            for worker in list(pending):
                score = self.r.zscore(f"kirana:alive:{worker.pool}", worker.name)
                if score is not None and score >= worker.started_ms:
                    pending.remove(worker)
                elif worker.server.proc is not None and worker.server.proc.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited: {tail(worker.server.log)}")
            return not pending

        wait_until(f"heartbeats of {[w.name for w in pending]}", beating, timeout, interval=0.2)

    def unacked(self) -> list[Unacked]:
        """Messages taken by a worker and not acked, from kombu's per-queue unacked hash and index.

        With them, the messages in a worker's in-flight list (tasks/broker.py): taken, not yet
        written down as unacked. A dead worker's list goes back to the queue when its lease lapses
        (INFLIGHT_LEASE_S), so they count as just taken (age 0): work that will move by itself.
        """
        found = []
        now = time.time()
        for queue in sorted({w.pool for w in self.workers}):
            for consumer in self.r.smembers(inflight_consumers_key(queue)):
                for raw in self.r.lrange(inflight_key(queue, consumer.decode()), 0, -1):
                    payload = json.loads(raw)
                    args = json.loads(base64.b64decode(payload["body"]))[0] if payload.get("body") else []
                    found.append(Unacked(queue, str((payload.get("headers") or {}).get("task")), list(args), 0.0,
                                         None))
            taken = dict(self.r.zrange(f"unacked_index:{queue}", 0, -1, withscores=True))
            for tag, raw in self.r.hgetall(f"unacked:{queue}").items():
                payload = json.loads(raw)[0]
                headers = payload.get("headers") or {}
                args = json.loads(base64.b64decode(payload["body"]))[0] if payload.get("body") else []
                eta = headers.get("eta")
                due = datetime.datetime.fromisoformat(eta).timestamp() if eta else None
                found.append(Unacked(queue, str(headers.get("task")), list(args), now - taken.get(tag, now),
                                     None if due is None else due - now))
        return found

    def idle(self) -> bool:
        """Nothing queued, in hand, due for a retry or waiting to be relayed: no order will move by itself.

        An unacked message taken more than IN_HAND_S ago, not waiting for a
        retry ETA, is not being worked on (every task's hard time limit is
        shorter): its ack was lost, or its worker died. It comes back only at
        its queue's visibility timeout (120 s for payments), which the test
        does not wait for before acting as beat.
        """
        try:
            pipe = self.r.pipeline(transaction=False)
            for queue in {w.pool for w in self.workers}:  # queues nobody here consumes do not count
                pipe.llen(queue)
            if any(pipe.execute()):
                return False
            if any(m.age_s < IN_HAND_S or (m.eta_in_s is not None and m.eta_in_s > 0) for m in self.unacked()):
                return False
            return self.db.outbox.count_documents({"status": "pending"}) == 0
        except (redis.exceptions.RedisError, pymongo.errors.PyMongoError):
            return False

    def live(self, pool: str) -> list[Worker]:
        return [w for w in self.workers if w.pool == pool and w.server.proc and w.server.proc.poll() is None]

    @staticmethod
    def wait_serving(server: servers.Server, url: str, timeout: float = 60.0) -> None:
        """Until `url` answers 200; fails at once, with its log, if the process exits."""

        def up() -> bool:
            if server.proc is not None and server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {server.proc.returncode}: {tail(server.log)}")
            return requests.get(url, timeout=2).status_code == 200

        wait_until(f"{server.name} answering {url}", up, timeout, interval=0.1)

    def start(self) -> ChaosStack:
        self.redis.start()
        self.mongo.start()
        database = self.db
        collections.ensure_indexes(database)
        seed.seed(database)
        started = [self.start_worker(pool) for pool in self.pools]
        self.relay.start()
        self.sandbox_server.start()
        self.api.start()
        self.wait_serving(self.api, self.url("/healthz"))
        self.wait_serving(self.sandbox_server, f"{self.sandbox_url}/_sandbox/healthz")
        self.wait_alive(started)
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for load in self.loads:
            load.stopping()
        children = [w.server for w in self.workers] + [self.api, self.sandbox_server, self.relay]
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                child.signal(signal.SIGTERM)
        for child in children:
            child.stop(timeout=15)
        if self._celery is not None:
            self._celery.close()
        if self._mongo is not None:
            self._mongo.close()
        if self._redis is not None:
            self._redis.close()
        for server in (self.mongo, self.redis):
            with contextlib.suppress(ProcessLookupError):
                server.signal(signal.SIGCONT)
            server.stop(timeout=15)
        for load in self.loads:
            load.close()

    def __enter__(self) -> ChaosStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- data ------------------------------------------------------------------------------

    def make_store(self, n_skus: int = 20, stock: int = 100_000) -> Store:
        store_id = f"store-chaos-{uuid.uuid4().hex[:6]}"
        self.db[collections.STORES].insert_one({"_id": store_id, "name": "Chaos Kirana", "city": "Pune"})
        skus = [f"CHAOS-{i:02d}" for i in range(n_skus)]
        self.db[collections.PRODUCTS].insert_many([
            {"_id": f"{store_id}:{sku}", "store_id": store_id, "sku": sku, "name": f"Chaos item {i}",
             "category": "Chaos", "price_paise": 1000 + 10 * i, "stock": stock, "updated_at_ms": now_ms()}
            for i, sku in enumerate(skus)
        ])
        return Store(store_id, skus, dict.fromkeys(skus, stock))

    def shoppers(self, n: int) -> list[Shopper]:
        """n customers, registered and logged in over HTTP."""
        found = []
        for _ in range(n):
            email = f"chaos-{uuid.uuid4().hex[:10]}@example.in"
            reg = requests.post(self.url("/api/v1/auth/register"), json={"email": email, "password": PASSWORD},
                                timeout=15)
            assert reg.status_code == 202, reg.text
            found.append(self.login(email))
        return found

    def login(self, email: str) -> Shopper:
        resp = requests.post(self.url("/api/v1/auth/login"), json={"email": email, "password": PASSWORD}, timeout=15)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return Shopper(body["user"]["id"], email, body["access_token"])

    def sandbox_stats(self) -> dict[str, Any]:
        resp = requests.get(f"{self.sandbox_url}/_sandbox/stats", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())


@dataclass(frozen=True)
class Unacked:
    queue: str
    task: str
    args: list[Any]
    age_s: float
    # Seconds until a retry's ETA (negative: due), None without one.
    eta_in_s: float | None

    @property
    def order_id(self) -> str | None:
        """The order the message is about (orders.process, payments.* name it or a payment 'ord_…:p1')."""
        first = self.args[0] if self.args else None
        return first.split(":", 1)[0] if isinstance(first, str) and first.startswith("ord_") else None


@dataclass
class Worker:
    pool: str
    name: str
    server: servers.Server
    started_ms: int

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (main process and pool children), as an OOM kill would."""
        assert self.server.proc is not None
        self.server.signal(signal.SIGKILL)
        self.server.proc.wait(10)


@dataclass(frozen=True)
class Store:
    id: str
    skus: list[str]
    initial: dict[str, int]


@dataclass(frozen=True)
class Shopper:
    user_id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def tail(path: Path | None, chars: int = 3000) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-chars:]


# --- the load -------------------------------------------------------------------------------


@dataclass
class Submission:
    n: int
    key: str
    shopper: Shopper
    body: dict[str, Any]
    status: int | None = None
    order_id: str | None = None
    error: str | None = None
    answered_at: float | None = None
    tries: int = 0
    # 503 answers before the last one (each retried with the same key).
    refusals: int = 0
    checkout: dict[str, Any] | None = None
    pay_status: str | None = None

    @property
    def method(self) -> str:
        return str(self.body["payment_method"])

    @property
    def paid(self) -> bool:
        return self.method != "cod"

    @property
    def scoped_key(self) -> str:
        """The order's idempotency_key field in MongoDB (kirana.orders.place)."""
        return f"{self.shopper.user_id}:{self.key}"


class Load:
    """`n` orders submitted at `rate` per second from a thread pool; online ones are then paid.

    Every submission carries its own Idempotency-Key. A transport error (no
    answer) and a 503 ("try again with the same Idempotency-Key": the order may
    have been stored, its reply lost) are retried with the same key for up to a
    minute, as an app would; the accounting checks that a retry got the order
    its first try stored, and that an order stored behind a last 503 is final.
    """

    def __init__(self, stack: ChaosStack, shoppers: list[Shopper], store: Store, *, n: int, rate: float = 30.0,
                 paid_every: int = 8, threads: int = 16, pay_timeout: float | None = None,
                 seed_: int = 7) -> None:
        self.stack = stack
        self.rate = rate
        self.threads = threads
        self.pay_timeout = pay_timeout
        rng = random.Random(seed_)
        self.subs: list[Submission] = []
        for i in range(n):
            method = "cod"
            if paid_every and i % paid_every == paid_every - 1:
                method = "upi" if (i // paid_every) % 2 == 0 else "card"
            items = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(store.skus, rng.randint(1, 3))]
            self.subs.append(Submission(i, f"chaos-{uuid.uuid4().hex}", shoppers[i % len(shoppers)],
                                        {"store_id": store.id, "payment_method": method, "items": items}))
        self._local = threading.local()
        self._answered = 0
        self._lock = threading.Lock()
        # One payer per paid order, each waiting (until `pay_timeout`, or the load is closed) for its
        # order to ask for payment, as its customer would: an order recovered late by beat's stuck
        # sweep, minutes into a case, is still paid. A shared few would starve behind such waits.
        self._payers = ThreadPoolExecutor(max(1, sum(1 for s in self.subs if s.paid)),
                                          thread_name_prefix="chaos-payer")
        self._pay_futures: list[Any] = []
        self._runner: threading.Thread | None = None
        self._closed = threading.Event()
        self.started_at = 0.0
        stack.loads.append(self)

    def _http(self) -> requests.Session:
        session = getattr(self._local, "http", None)
        if session is None:
            session = self._local.http = requests.Session()
        return session

    def start(self) -> Load:
        self.started_at = time.monotonic()
        self._runner = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._runner.start()
        return self

    def _run(self) -> None:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="chaos-submit") as pool:
            list(pool.map(self._submit, self.subs))

    def _submit(self, sub: Submission) -> None:
        due = self.started_at + sub.n / self.rate
        time.sleep(max(0.0, due - time.monotonic()))
        deadline = time.monotonic() + 60
        while True:
            sub.tries += 1
            try:
                resp = self._http().post(self.stack.url("/api/v1/orders"), json=sub.body, timeout=20,
                                         headers={**sub.shopper.headers, "Idempotency-Key": sub.key})
            except requests.RequestException as exc:
                sub.error = f"no answer: {type(exc).__name__}"
                if time.monotonic() < deadline and not self._closed.wait(0.5):
                    continue
                break
            sub.status = resp.status_code
            if resp.status_code == 202:
                sub.order_id = resp.json()["id"]
                sub.error = None
                break
            sub.error = resp.text[:500]
            if resp.status_code == 503 and time.monotonic() < deadline and not self._closed.wait(0.5):
                sub.refusals += 1
                continue
            break
        sub.answered_at = time.monotonic()
        with self._lock:
            self._answered += 1
        if sub.order_id and sub.paid:
            self._pay_futures.append(self._payers.submit(self._pay, sub))

    def _get(self, sub: Submission) -> dict[str, Any] | None:
        try:
            resp = self._http().get(self.stack.url(f"/api/v1/orders/{sub.order_id}"), headers=sub.shopper.headers,
                                    timeout=20)
        except requests.RequestException:
            return None
        return dict(resp.json()) if resp.status_code == 200 else None

    def _pay(self, sub: Submission) -> None:
        """The customer's side of Checkout: wait for the payment order, pay in the sandbox, report it."""
        try:
            self._pay_unguarded(sub)
        except Exception as exc:  # recorded, and the order then counts as lost
            sub.pay_status = f"payer crashed: {exc!r}"

    def _pay_unguarded(self, sub: Submission) -> None:
        deadline = time.monotonic() + (self.pay_timeout if self.pay_timeout is not None else 24 * 3600.0)
        order = None
        while time.monotonic() < deadline and not self._closed.is_set():
            order = self._get(sub)
            if order is not None and order["status"] == "awaiting_payment":
                break
            if order is not None and order["status"] in FINAL:
                sub.pay_status = f"{order['status']} before payment"
                return
            self._closed.wait(0.5)
        else:
            sub.pay_status = f"never awaiting_payment (last seen {order and order['status']})"
            return
        rzp_order = order["payment"]["razorpay_order_id"]
        if sub.method == "upi":
            action, body = "upi", {"flow": "intent", "vpa": "chaos@okicici", "outcome": "success"}
        else:
            action, body = "authorize", {"method": "card"}
        resp = self._http().post(f"{self.stack.sandbox_url}/_sandbox/checkout/{rzp_order}/{action}", json=body,
                                 timeout=20)
        if resp.status_code >= 300:
            sub.pay_status = f"checkout {resp.status_code}: {resp.text[:200]}"
            return
        sub.checkout = resp.json()
        verify = {k: sub.checkout[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}
        while time.monotonic() < deadline and not self._closed.is_set():
            try:
                resp = self._http().post(self.stack.url("/api/v1/payments/verify"), json=verify,
                                         headers=sub.shopper.headers, timeout=20)
            except requests.RequestException:
                self._closed.wait(0.5)
                continue
            if resp.status_code == 202:
                sub.pay_status = "verified"
                return
            if resp.status_code < 500:
                sub.pay_status = f"verify {resp.status_code}: {resp.text[:200]}"
                return
            self._closed.wait(0.5)  # 503: try again, as an app would
        sub.pay_status = "verify never accepted"

    def wait_answered(self, k: int, timeout: float) -> None:
        wait_until(f"{k} submissions answered", lambda: self._answered >= k, timeout, interval=0.02)

    def join(self, timeout: float = 120.0) -> None:
        """Every submission answered (not yet every order final)."""
        assert self._runner is not None
        self._runner.join(timeout)
        assert not self._runner.is_alive(), f"submissions still running after {timeout:.0f}s"

    def join_payments(self, timeout: float) -> None:
        """Let the payers finish (within `timeout`), then stop the ones still waiting for an order that is stuck."""
        deadline = time.monotonic() + timeout
        for future in list(self._pay_futures):
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.1, deadline - time.monotonic()))
        self.close()

    def stopping(self) -> None:
        """No more retries or polls: the stack is going away."""
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        self._payers.shutdown(wait=True, cancel_futures=True)

    @property
    def accepted_ids(self) -> list[str]:
        return [s.order_id for s in self.subs if s.order_id]


@dataclass
class Finish:
    """How waiting for the orders to become final ended."""

    # Monotonic time every order was final, None if some never were.
    final_at: float | None
    # When the test had to act as beat (orders.requeue_stuck + payments.reconcile), relative to the wait's start.
    sweeps: list[float] = field(default_factory=list)
    # The store's unfinished orders (id -> status) when the first sweep was needed, but for those
    # with a message left in an unacked hash (awaiting_restore): kombu gives that back by itself, later.
    stuck: dict[str, str] = field(default_factory=dict)
    awaiting_restore: list[str] = field(default_factory=list)

    def since(self, t0: float) -> float | None:
        return None if self.final_at is None else self.final_at - t0

    def note(self) -> str:
        if not self.sweeps:
            return "no beat sweep needed"
        counts = Counter(self.stuck.values())
        restore = f", {len(self.awaiting_restore)} more awaiting a restore" if self.awaiting_restore else ""
        return (f"stalled with {len(self.stuck)} unfinished order(s) ({dict(counts)}){restore}: the test acted as "
                f"beat (orders.requeue_stuck + payments.reconcile) {len(self.sweeps)}x from +{self.sweeps[0]:.0f}s")


# After the last order is final, how long the wait goes on for retries still due (an ETA holds at
# most its queue's max countdown: 20 s for orders, 45 s for payments; tasks/queues.py).
SETTLE_S = 60.0


def wait_final(stack: ChaosStack, ids: list[str], *, timeout: float, store_id: str | None = None,
               sweep: bool = True, sweep_for: float = 80.0, stall_s: float = 10.0,
               nudge: Callable[[float], None] | None = None) -> Finish:
    """Until every order of `ids` is final, within `timeout`, and then nothing is left to run (SETTLE_S).

    Stalled (no order became final for `stall_s` while every queue, every
    unacked hash -- tasks in hand, retries waiting as ETAs, messages a dead
    worker left -- and the outbox are empty), the test acts as beat would:
    it sends orders.requeue_stuck and payments.reconcile (the workers run
    with STUCK_ORDER_AFTER_S=5), again at every further stall, for at most
    `sweep_for` seconds (past the 60 s order lease). Without `sweep` a stall
    ends the wait. `nudge(elapsed)` is called about every second meanwhile
    (a case acting as a supervisor).
    """
    started = time.monotonic()
    deadline = started + timeout
    finish = Finish(None)
    last_nudge = 0.0
    last_done, changed_at = -1, started
    while time.monotonic() < deadline:
        try:
            done = stack.db[collections.ORDERS].count_documents({"_id": {"$in": ids}, "status": {"$in": list(FINAL)}})
        except pymongo.errors.PyMongoError:
            done = -1
        now = time.monotonic()
        if done == len(ids):
            finish.final_at = now
            # Final is not finished: a retry waiting as an ETA may still settle a confirmed
            # order's stock holds or write its event. Judge once nothing more will run.
            settle_by = now + SETTLE_S
            while time.monotonic() < settle_by and not stack.idle():
                time.sleep(0.5)
            return finish
        if done != last_done:
            last_done, changed_at = done, now
        elif now - changed_at > stall_s and stack.idle():
            if not sweep or (finish.sweeps and now - started - finish.sweeps[0] > sweep_for):
                return finish
            if not finish.sweeps:
                # Stuck: unfinished, and no message about it waiting in an unacked hash for its restore.
                waiting = {m.order_id for m in stack.unacked()}
                query = {"store_id": store_id} if store_id else {"_id": {"$in": ids}}
                finish.stuck = {o["_id"]: o["status"] for o in stack.db[collections.ORDERS].find(
                    {**query, "status": {"$nin": list(FINAL)}}, {"status": 1}) if o["_id"] not in waiting}
                finish.awaiting_restore = sorted(i for i in waiting if i)
            stack.send("orders.requeue_stuck")
            stack.send("payments.reconcile")
            finish.sweeps.append(now - started)
            changed_at = now
        if nudge is not None and now - last_nudge >= 1.0:
            last_nudge = now
            with contextlib.suppress(Exception):
                nudge(now - started)
        time.sleep(0.5)
    return finish
