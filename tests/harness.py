"""A live Kirana for end-to-end tests: gunicorn and a worker per pool, over HTTP."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import requests
from pymongo.database import Database

from kirana import db, seed
from kirana.config import Settings
from stack import servers
from stack.commands import api_command
from workers.pools import POOLS, worker_command

TERMINAL = {"confirmed", "rejected"}


def api_server(run_dir: Path, cfg: Settings, name: str = "api", **env: str) -> servers.Server:
    port = servers.free_port()
    argv = api_command(cfg, port=port)
    return servers.Server(name, argv, port, env=servers.process_env(cfg.redis_url, cfg.mongo_url, **env),
                          log=run_dir / f"{name}.log")


class Stack:
    def __init__(self, run_dir: Path, cfg: Settings) -> None:
        self.run_dir = run_dir
        self.cfg = cfg
        self.api = api_server(run_dir, cfg)
        self.base_url = f"http://127.0.0.1:{self.api.port}"
        self.workers: dict[str, servers.Server] = {}
        self.http = requests.Session()

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
        self.api.start()
        for pool in POOLS:
            self.start_worker(pool.name)
        try:
            servers.wait_http(f"{self.base_url}/readyz", timeout=90)
        except TimeoutError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # Signal them all first: a warm shutdown each, in parallel.
        for server in [*self.workers.values(), self.api]:
            server.signal(signal.SIGTERM)
        for server in [*self.workers.values(), self.api]:
            server.stop()

    # --- what a client of the API does -------------------------------------------------

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

