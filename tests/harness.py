"""A live Kirana for end-to-end tests: gunicorn and a worker per pool, over HTTP."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
import requests
from pymongo.database import Database

from kirana import accounts, db, seed
from kirana import two_factor as two_factor_mod
from kirana.config import Settings
from kirana.permissions import TWO_FACTOR_REQUIRED, Role
from stack import servers
from stack.commands import (
    api_command,
    mailbox_command,
    messaging_command,
    messaging_env,
    outbox_relay_command,
    sandbox_command,
    sandbox_env,
    ws_command,
)
from workers.pools import POOLS, worker_command

TERMINAL = {"confirmed", "rejected"}


def eventually(probe: Callable[[], Any], timeout: float = 20, what: str = "it") -> Any:
    """`probe()`'s first truthy answer, polled every 0.1 s; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)
    return found


def api_server(run_dir: Path, cfg: Settings, name: str = "api", **env: str) -> servers.Server:
    port = servers.free_port()
    argv = api_command(cfg, port=port)
    return servers.Server(name, argv, port, env=servers.process_env(cfg.redis_url, cfg.mongo_url, **env),
                          log=run_dir / f"{name}.log")


def ws_server(run_dir: Path, cfg: Settings, name: str = "ws", **env: str) -> servers.Server:
    """The same app under gunicorn's gevent worker, serving /ws/ (live order updates)."""
    port = servers.free_port()
    return servers.Server(name, ws_command(cfg, port), port,
                          env=servers.process_env(cfg.redis_url, cfg.mongo_url, **env), log=run_dir / f"{name}.log")


class Stack:
    def __init__(self, run_dir: Path, cfg: Settings) -> None:
        self.run_dir = run_dir
        self.cfg = cfg
        self.api = api_server(run_dir, cfg)
        self.base_url = f"http://127.0.0.1:{self.api.port}"
        self.ws = ws_server(run_dir, cfg)
        self.ws_url = f"ws://127.0.0.1:{self.ws.port}"
        self.workers: dict[str, servers.Server] = {}
        self.relay: servers.Server | None = None
        env = servers.process_env(cfg.redis_url, cfg.mongo_url, **messaging_env(cfg))
        self.messaging_url = cfg.sms_base_url
        self.messaging_server = servers.Server("messaging-sandbox", messaging_command(cfg),
                                               int(cfg.sms_base_url.rsplit(":", 1)[1]), env=env,
                                               log=run_dir / "messaging-sandbox.log")
        mailbox_http = int(os.environ["KIRANA_MAILBOX_HTTP_PORT"])
        self.mailbox_url = f"http://127.0.0.1:{mailbox_http}"
        self.mailbox_server = servers.Server("mailbox", mailbox_command(cfg, mailbox_http), cfg.smtp_port, env=env,
                                             log=run_dir / "mailbox.log")
        self.sandbox = Sandbox(cfg.razorpay_base_url)
        self.sandbox_server = servers.Server(
            "razorpay-sandbox", sandbox_command(cfg, webhook_url=f"{self.base_url}/webhooks/razorpay"),
            self.sandbox.port, env=servers.process_env(cfg.redis_url, cfg.mongo_url, **sandbox_env(cfg)),
            log=run_dir / "razorpay-sandbox.log")

    @property
    def db(self) -> Database:
        return db.database(self.cfg)

    def start_worker(self, pool_name: str) -> servers.Server:
        pool = next(p for p in POOLS if p.name == pool_name)
        env = servers.process_env(self.cfg.redis_url, self.cfg.mongo_url)
        # Workers listen on no port: /readyz tells when they are alive.
        worker = servers.Server(pool.name, worker_command(pool), None, env=env,
                                log=self.run_dir / f"worker-{pool.name}.log").start()
        self.workers[pool.name] = worker
        return worker

    def __enter__(self) -> Stack:
        database = self.db
        db.ensure_indexes(database)
        seed.seed(database)
        self.sandbox_server.start()
        self.messaging_server.start()
        self.mailbox_server.start()
        self.api.start()
        self.ws.start()
        for pool in POOLS:
            self.start_worker(pool.name)
        self.relay = servers.Server("outbox-relay", outbox_relay_command(), None,
                                    env=servers.process_env(self.cfg.redis_url, self.cfg.mongo_url),
                                    log=self.run_dir / "outbox-relay.log").start()
        try:
            servers.wait_http(f"{self.base_url}/readyz", timeout=90)
            servers.wait_http(f"http://127.0.0.1:{self.ws.port}/healthz", timeout=30)
        except TimeoutError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # Signal them all first: a warm shutdown each, in parallel.
        servers_ = [*self.workers.values(), self.api, self.ws, self.sandbox_server, self.messaging_server,
                    self.mailbox_server, *([self.relay] if self.relay else [])]
        for server in servers_:
            server.signal(signal.SIGTERM)
        for server in servers_:
            server.stop()

    # --- users of the API ----------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def user(self, role: Role = Role.CUSTOMER, *, store_id: str | None = None, phone: str | None = None,
             two_factor: bool | None = None) -> Client:
        """A new account with `role`, logged in over HTTP (with two-factor where the role needs it)."""
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.in"
        user = accounts.register(self.db, email, PASSWORD, role=role, store_id=store_id, phone=phone)
        secret = None
        if two_factor if two_factor is not None else role in TWO_FACTOR_REQUIRED:
            secret = two_factor_mod.begin_enrolment(self.db, user.id, email, issuer="Kirana").secret
            two_factor_mod.confirm_enrolment(self.db, user.id, pyotp.TOTP(secret).at(time.time() - 30))
        login: dict[str, Any] = {"email": email, "password": PASSWORD}
        if secret:
            login["otp"] = pyotp.TOTP(secret).now()
        resp = requests.post(self.url("/api/v1/auth/login"), json=login, timeout=10)
        assert resp.status_code == 200, resp.text
        return Client(self.base_url, user.id, email, resp.json(), totp_secret=secret)

    def customer(self) -> Client:
        return self.user(Role.CUSTOMER)


PASSWORD = "correct horse battery staple"


class Client:
    """One signed-in user of the API: an HTTP session carrying the bearer token."""

    def __init__(self, base_url: str, user_id: str, email: str, tokens: dict[str, Any],
                 totp_secret: str | None = None) -> None:
        self.base_url = base_url
        self.user_id = user_id
        self.email = email
        self.tokens = tokens
        self.totp_secret = totp_secret
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {tokens['access_token']}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def submit(self, body: dict[str, Any], key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post(self.url("/api/v1/orders"), json=body, headers=headers, timeout=10)

    def order(self, order_id: str) -> dict[str, Any]:
        resp = self.http.get(self.url(f"/api/v1/orders/{order_id}"), timeout=10)
        resp.raise_for_status()
        return resp.json()

    def wait_terminal(self, order_id: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(order_id)
            if order["status"] in TERMINAL or time.monotonic() > deadline:
                return order
            time.sleep(0.05)



class Sandbox:
    """The Razorpay sandbox's customer-side checkout and its test controls."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.port = int(self.base_url.rsplit(":", 1)[1])
        self.http = requests.Session()

    def checkout(self, rzp_order_id: str, action: str, **body: Any) -> dict[str, Any]:
        resp = self.http.post(f"{self.base_url}/_sandbox/checkout/{rzp_order_id}/{action}", json=body, timeout=10)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def control(self, **knobs: Any) -> None:
        resp = self.http.post(f"{self.base_url}/_sandbox/control", json=knobs, timeout=10)
        assert resp.status_code < 300, resp.text

    def reset(self) -> None:
        self.http.post(f"{self.base_url}/_sandbox/reset", timeout=10).raise_for_status()

    def flush(self, order: str = "fifo") -> None:
        self.http.post(f"{self.base_url}/_sandbox/webhooks/flush", json={"order": order}, timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.base_url}/_sandbox/stats", timeout=10).json()
