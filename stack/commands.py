"""The command lines of the stack's own processes (API, Flower), beside workers/pools.py."""

from __future__ import annotations

import sys
from pathlib import Path

from kirana.config import Settings


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def api_command(cfg: Settings, *, port: int | None = None, app: str = "api.wsgi:app") -> list[str]:
    return [
        _bin("gunicorn"), app,
        "--bind", f"{cfg.api_host}:{port or cfg.api_port}",
        # gthread: flask-sock's WebSockets hold one thread per open socket.
        "--worker-class", "gthread", "--workers", str(cfg.api_workers), "--threads", str(cfg.api_threads),
        "--graceful-timeout", "10", "--timeout", "30",
        "--access-logfile", "-",
        # gunicorn 27's control socket lives at one path per user: two APIs on
        # one machine (tests, bench) would take it from each other.
        "--no-control-socket",
    ]


def flower_command(cfg: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "flower",
        f"--port={cfg.flower_port}", "--address=127.0.0.1",
        f"--basic-auth={cfg.flower_basic_auth}",
    ]


def sandbox_command(cfg: Settings, *, webhook_url: str) -> list[str]:
    """The local Razorpay sandbox, on the port of RAZORPAY_BASE_URL, sending webhooks to `webhook_url`."""
    port = cfg.razorpay_base_url.rstrip("/").rsplit(":", 1)[1]
    return [sys.executable, "-m", "sandbox", "--port", port, "--webhook-url", webhook_url]


def sandbox_env(cfg: Settings) -> dict[str, str]:
    """The sandbox must hold the same keys as the code that calls it."""
    return {"RAZORPAY_KEY_ID": cfg.razorpay_key_id, "RAZORPAY_KEY_SECRET": cfg.razorpay_key_secret,
            "RAZORPAY_WEBHOOK_SECRET": cfg.razorpay_webhook_secret}


def outbox_relay_command() -> list[str]:
    return [sys.executable, "-m", "tasks.outbox_relay"]
