"""Issue 20, item 2: the real API, worker, beat, relay and Flower check refuse to start with a
development secret outside development, and say which variable is wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kirana.config import Settings
from stack.commands import api_command
from stack.servers import free_port
from workers.pools import BY_NAME, worker_command

PRODUCTION = {"KIRANA_ENV": "production"}
REAL_SECRETS = {
    "TOKEN_SECRET": "t" * 48, "RAZORPAY_KEY_ID": "rzp_live_abc", "RAZORPAY_KEY_SECRET": "live-key-secret",
    "RAZORPAY_WEBHOOK_SECRET": "live-webhook-secret", "SMS_API_KEY": "sms-live", "PUSH_SERVER_KEY": "push-live",
    "SMS_BASE_URL": "https://sms.example.com", "PUSH_BASE_URL": "https://push.example.com",
}


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REAL_SECRETS and k not in {"KIRANA_ENV", "FLOWER_BASIC_AUTH",
                                                                                      "RAZORPAY_BASE_URL"}}
    # Unreachable on purpose: a refused process must refuse before it connects to anything.
    env.update(REDIS_URL="redis://127.0.0.1:1/0", MONGO_URL="mongodb://127.0.0.1:1", MONGO_TIMEOUT_MS="300")
    env.update(overrides)
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("process", ["api", "worker", "beat", "relay"])
def test_each_process_refuses_the_development_secrets_in_production_naming_them(process: str) -> None:
    py = sys.executable
    argv = {
        "api": api_command(Settings(api_workers=1), port=free_port()),
        "worker": worker_command(BY_NAME["orders"]),
        "beat": [py, "-m", "celery", "-A", "tasks.app", "beat", "-s", os.devnull + ".no-schedule"],
        "relay": [py, "-m", "tasks.outbox_relay"],
    }[process]
    if process == "beat":
        argv[-1] = "/tmp/kirana-preflight-beat-schedule"
    done = _run(argv, _env(**PRODUCTION))
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-2000:]
    assert "refuses to start (KIRANA_ENV=production)" in out, out[-2000:]
    for var in ("TOKEN_SECRET is the development default", "RAZORPAY_WEBHOOK_SECRET is the development default",
                "SMS_API_KEY is the development default"):
        assert var in out, out[-2000:]


def test_a_worker_pointed_at_the_real_gateway_with_the_sandbox_key_is_refused() -> None:
    done = _run(worker_command(BY_NAME["payments"]),
                _env(RAZORPAY_BASE_URL="https://api.razorpay.com",
                     **{**REAL_SECRETS, "RAZORPAY_KEY_SECRET": "kirana_sandbox_key_secret"}))
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "RAZORPAY_BASE_URL=https://api.razorpay.com is not the local sandbox" in out, out[-2000:]
    assert "RAZORPAY_KEY_SECRET is the development default" in out
    assert "TOKEN_SECRET" not in out.split("refuses to start", 1)[1].split("\n", 1)[0]


def test_flowers_container_check_refuses_the_dev_password_and_passes_a_real_one() -> None:
    check = [sys.executable, "-m", "kirana.preflight", "--flower"]
    refused = _run(check, _env(**PRODUCTION, **REAL_SECRETS, FLOWER_BASIC_AUTH="ops:kirana-dev"))
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("flower refuses to start (KIRANA_ENV=production): FLOWER_BASIC_AUTH is the "
                                      "development default. Set them from your secret store (docs/deploy.md, "
                                      "'Secrets').")
    passed = _run(check, _env(**PRODUCTION, **REAL_SECRETS, FLOWER_BASIC_AUTH="ops:" + "p" * 24))
    assert passed.returncode == 0, passed.stderr


def test_the_api_with_every_secret_set_starts_in_production() -> None:
    """The refusal is about the secrets, not production itself: set them and the API serves."""
    import time

    import requests

    port = free_port()
    proc = subprocess.Popen(api_command(Settings(api_workers=1), port=port), env=_env(**PRODUCTION, **REAL_SECRETS),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        answered = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answered = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                break
            except requests.RequestException:
                time.sleep(0.2)
        assert answered == 200, proc.stderr.read() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
