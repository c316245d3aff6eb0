"""The command lines of the stack's own processes (API, Flower), beside workers/pools.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kirana.config import Settings
from stack import servers


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def api_command(cfg: Settings, *, port: int | None = None, app: str = "api.wsgi:app") -> list[str]:
    return [
        _bin("gunicorn"), app,
        "--config", "python:stack.gunicorn_conf",
        "--bind", f"{cfg.api_host}:{port or cfg.api_port}",
        # gthread, with new connections shared out evenly among the workers (stack/balanced_worker.py).
        "--worker-class", "stack.balanced_worker.BalancedThreadWorker",
        "--workers", str(cfg.api_workers), "--threads", str(cfg.api_threads),
        "--graceful-timeout", "10", "--timeout", "30",
        # No gunicorn access log: api/tracing.py logs each request as JSON, with its request id.
        # gunicorn 27's control socket lives at one path per user: two APIs on
        # one machine (tests, bench) would take it from each other.
        "--no-control-socket",
    ]


# The WebSocket server's settings. Read here, not in kirana.config, for now:
#   WS_PORT                default API_PORT + 1 (8001)
#   WS_WORKERS             default 1: each gevent worker is one process, with one Redis subscriber
#   WS_WORKER_CONNECTIONS  default 5000: open sockets (and requests) per worker
def ws_port(cfg: Settings) -> int:
    return cfg.ws_port or cfg.api_port + 1


def ws_command(cfg: Settings, port: int | None = None, *, app: str = "api.wsgi:app") -> list[str]:
    """The same app under gunicorn's gevent worker, for /ws/: a greenlet per socket, not a thread.

    The worker monkey-patches the standard library before it loads the app, so
    pymongo, redis-py and kirana.live's thread and queues all become cooperative.
    """
    return [
        _bin("gunicorn"), app,
        "--config", "python:stack.gunicorn_conf",
        "--bind", f"{cfg.api_host}:{port or ws_port(cfg)}",
        "--worker-class", "gevent", "--workers", str(cfg.ws_workers),
        "--worker-connections", str(cfg.ws_worker_connections),
        # Sockets never finish by themselves: on a restart they are closed after this, and
        # clients reconnect (getting the current state first).
        "--graceful-timeout", "5", "--timeout", "30",
        "--access-logfile", "-",
        # The path without the query string: browsers send the access token as ?access_token=.
        "--access-logformat", '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s" %(L)s',
        "--no-control-socket",
    ]


FLOWER_MAX_TASKS = 10_000


def flower_command(cfg: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "flower",
        f"--port={cfg.flower_port}", "--address=127.0.0.1",
        f"--basic-auth={cfg.flower_basic_auth}",
        # Tasks kept in memory for its pages; its default (100,000) grew it by 423 MB in `make soak`'s 10 minutes.
        f"--max-tasks={FLOWER_MAX_TASKS}",
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


def messaging_command(cfg: Settings) -> list[str]:
    """The SMS and push sandbox, on the port of SMS_BASE_URL."""
    port = cfg.sms_base_url.rstrip("/").rsplit(":", 1)[1]
    return [sys.executable, "-m", "sandbox.messaging", "--port", port]


def mailbox_command(cfg: Settings, http_port: int) -> list[str]:
    """A local SMTP server that keeps what it receives, readable over HTTP on `http_port`."""
    return [sys.executable, "-m", "sandbox.mailbox", "--port", str(cfg.smtp_port), "--http-port", str(http_port)]


def messaging_env(cfg: Settings) -> dict[str, str]:
    return {"SMS_API_KEY": cfg.sms_api_key, "PUSH_SERVER_KEY": cfg.push_server_key}


# celery-exporter lives in its own virtualenv (it pins older redis and prometheus-client):
# `make exporter` creates it from deploy/exporter-constraints.txt.
EXPORTER_PYTHON = Path(__file__).resolve().parent.parent / ".venv-exporter" / "bin" / "python"


def exporter_command(cfg: Settings, *, python: str | Path = EXPORTER_PYTHON) -> list[str]:
    """danihodovic/celery-exporter on EXPORTER_PORT, reading the broker's events and queue lengths.

    It ships as a top-level package named `src`. -Q lists every queue so an idle
    queue shows length 0 rather than no series; the task-sent counter gets one
    generic hostname label, as any API process or pod may publish.
    """
    from tasks.queues import Queue

    return [
        # The package has no __main__: call its click command as upstream's cli.py does.
        str(python), "-c", "from src.cli import cli; cli()",
        "--broker-url", cfg.redis_url,
        "--host", "127.0.0.1", "--port", str(cfg.exporter_port),
        "-Q", ",".join(q.value for q in Queue),
        "--generic-hostname-task-sent-metric",
        # A worker silent for 30 s is down (it sends a heartbeat event every 2 s).
        "--worker-timeout", "30",
        "--log-level", "WARNING",
    ]


def isolated_env(data_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The environment for a `python -m stack run` of its own: free ports, `data_dir`, its own servers.

    For runs beside another stack (the e2e test of the runner, `make soak`). Returns the
    environment and the ports, by name.
    """
    ports = {name: servers.free_port() for name in ("redis", "mongo", "api", "ws", "flower", "razorpay", "messaging",
                                                     "smtp", "mailbox", "exporter")}
    # Set, these would make the runner use those servers instead of starting its own.
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MONGO_URL", "MONGO_DB", "RAZORPAY_BASE_URL"}}
    env.update({
        "KIRANA_STACK_REDIS_PORT": str(ports["redis"]), "KIRANA_STACK_MONGO_PORT": str(ports["mongo"]),
        "KIRANA_STACK_RAZORPAY_PORT": str(ports["razorpay"]),
        "SMS_BASE_URL": f"http://127.0.0.1:{ports['messaging']}", "PUSH_BASE_URL": f"http://127.0.0.1:{ports['messaging']}",
        "SMTP_PORT": str(ports["smtp"]), "KIRANA_STACK_MAILBOX_HTTP_PORT": str(ports["mailbox"]),
        "API_PORT": str(ports["api"]), "WS_PORT": str(ports["ws"]), "FLOWER_PORT": str(ports["flower"]),
        "EXPORTER_PORT": str(ports["exporter"]), "KIRANA_DATA_DIR": str(data_dir),
    })
    return env, ports
