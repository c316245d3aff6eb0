"""`make run`'s runner: the whole stack from nothing, an order through it, then a clean stop."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from stack import servers
from stack.commands import EXPORTER_PYTHON, isolated_env
from workers.pools import POOLS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_the_runner_starts_everything_serves_an_order_and_stops_everything(tmp_path: Path) -> None:
    env, ports = isolated_env(tmp_path)
    env.update({
        "KIRANA_POOL_ORDERS_CONCURRENCY": "1", "KIRANA_POOL_PAYMENTS_CONCURRENCY": "1",
        "KIRANA_POOL_WEBHOOKS_CONCURRENCY": "1", "KIRANA_POOL_NOTIFICATIONS_CONCURRENCY": "1",
    })
    log = open(tmp_path / "stack.log", "wb")  # noqa: SIM115
    runner = subprocess.Popen([sys.executable, "-m", "stack", "run"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{ports['api']}"
    try:
        servers.wait_http(f"{base}/readyz", timeout=120)
        # As the README's quick start: register, log in, browse, order.
        http = requests.Session()
        account = {"email": "runner@example.in", "password": "a long enough password"}
        assert http.post(f"{base}/api/v1/auth/register", json=account, timeout=10).status_code == 202
        token = http.post(f"{base}/api/v1/auth/login", json=account, timeout=10).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        # The runner seeds the catalog once the servers answer.
        deadline = time.monotonic() + 30
        products: list[dict] = []
        while not products and time.monotonic() < deadline:
            products = [p for p in http.get(f"{base}/api/v1/products?limit=50", timeout=10).json()["items"]
                        if p["stock"] > 0]
        product = products[0]
        resp = http.post(f"{base}/api/v1/orders", json={
            "store_id": product["store_id"], "payment_method": "cod",
            "items": [{"sku": product["sku"], "qty": 1}]}, timeout=10)
        order_url = base + resp.headers["Location"]
        deadline = time.monotonic() + 10
        while http.get(order_url, timeout=10).json()["status"] != "confirmed":
            assert time.monotonic() < deadline, "order not confirmed"
            time.sleep(0.1)
        flower = f"http://127.0.0.1:{ports['flower']}/"
        servers.wait_port("127.0.0.1", ports["flower"], timeout=30)
        assert requests.get(flower, timeout=10).status_code == 401
        assert requests.get(flower, auth=("ops", "kirana-dev"), timeout=10).status_code == 200
        assert "Kirana is up" in (tmp_path / "stack.log").read_text()
        assert_metrics_of_every_pool_and_the_order(ports["exporter"], base)
        assert (tmp_path / "run" / "stack.pid").read_text() == str(runner.pid)
    finally:
        # `make stop`; the runner is reaped here, as its shell would in real use.
        stop = subprocess.Popen([sys.executable, "-m", "stack", "stop"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        runner.wait(60)
        stopped = stop.communicate(timeout=60)[0]
        log.close()

    assert stop.returncode == 0, stopped
    assert not (tmp_path / "run" / "stack.pid").exists()
    for name, port in ports.items():
        assert not servers.port_open("127.0.0.1", port), f"{name} still listens on {port}"
    leftover = subprocess.run(["pgrep", "-f", f"--port {ports['mongo']}|:{ports['api']}|port {ports['redis']}"],
                              check=False, capture_output=True, text=True)
    assert leftover.stdout == "", f"processes left behind: {leftover.stdout}"


def assert_metrics_of_every_pool_and_the_order(exporter_port: int, base: str) -> None:
    """celery-exporter (make run starts it from .venv-exporter) sees a live worker of every pool,
    told apart by their node names <pool>@<pool>.<host>; the API's /metrics, summed over its
    gunicorn workers, counted the order."""
    assert EXPORTER_PYTHON.exists(), "celery-exporter's virtualenv is missing: make exporter"
    servers.wait_port("127.0.0.1", exporter_port, timeout=30)
    deadline = time.monotonic() + 60
    missing = [p.name for p in POOLS]
    while missing and time.monotonic() < deadline:
        exported = requests.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=10).text
        missing = [p.name for p in POOLS
                   if not re.search(rf'^celery_worker_up\{{hostname="{p.name}\.[^"]+"\}} 1\.0$', exported, re.M)]
        time.sleep(1)
    assert not missing, f"celery-exporter shows no live worker for {missing}"
    api_metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert re.search(r'^kirana_http_requests_total\{method="POST",route="/api/v1/orders",status="202"\} 1\.0$',
                     api_metrics, re.M), "the API's /metrics misses the order"
