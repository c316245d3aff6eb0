"""`make run`: the whole stack in the foreground; `make stop` stops one in the background.

    python -m stack run     redis-server, nx-27017, the Razorpay sandbox, API, WebSocket server (ws),
                            a worker per pool, beat, Flower, celery-exporter
    python -m stack stop    SIGTERM the stack whose pid is in var/run/stack.pid

honcho supervises the processes: it multiplexes their output and, on Ctrl-C,
SIGTERM or the death of any one of them, stops all the others. With
REDIS_URL or MONGO_URL set, that server is used instead of a private one.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from honcho.manager import Manager

from kirana.config import Settings, settings
from stack import servers
from stack.commands import (
    EXPORTER_PYTHON,
    api_command,
    exporter_command,
    flower_command,
    mailbox_command,
    messaging_command,
    messaging_env,
    outbox_relay_command,
    sandbox_command,
    sandbox_env,
    ws_command,
    ws_port,
)
from workers.pools import POOLS, beat_command, worker_command

# Off the standard ports, so the private servers never meet the machine's own.
REDIS_PORT = int(os.environ.get("KIRANA_STACK_REDIS_PORT", "6390"))
MONGO_PORT = int(os.environ.get("KIRANA_STACK_MONGO_PORT", "27027"))
RAZORPAY_PORT = int(os.environ.get("KIRANA_STACK_RAZORPAY_PORT", "9100"))
MAILBOX_HTTP_PORT = int(os.environ.get("KIRANA_STACK_MAILBOX_HTTP_PORT", "8025"))


def _pid_file(cfg: Settings) -> Path:
    return cfg.data_dir / "run" / "stack.pid"


def _setup_and_announce(cfg: Settings, redis_url: str, mongo_url: str) -> None:
    """Once the servers answer: indexes, the demo catalog, then the URLs."""
    from kirana import db, seed

    try:
        for url in (redis_url, mongo_url):
            parsed = urlparse(url)
            servers.wait_port(parsed.hostname or "127.0.0.1", parsed.port or 0, timeout=60)
        database = db.database(cfg)
        db.ensure_indexes(database)
        if database[db.PRODUCTS].estimated_document_count() == 0:
            print(f"seeded: {seed.seed(database)}", flush=True)
        base = f"http://{cfg.api_host}:{cfg.api_port}"
        servers.wait_http(f"{base}/readyz", timeout=120)
        ws_base = f"ws://{cfg.api_host}:{ws_port(cfg)}"
        servers.wait_http(f"http://{cfg.api_host}:{ws_port(cfg)}/healthz", timeout=60)
    except Exception as exc:  # printed, not raised: the stack keeps running for diagnosis
        print(f"\n!! stack setup failed: {exc}\n", flush=True)
        return
    user = cfg.flower_basic_auth.split(":", 1)[0]
    print(
        "\n"
        f"  Kirana is up.\n"
        f"  API      {base}   (try: curl {base}/readyz)\n"
        f"  Live     {ws_base}/ws/orders/<order id>?access_token=<token>   (WebSocket)\n"
        f"  Flower   http://127.0.0.1:{cfg.flower_port}   (user {user!r}, FLOWER_BASIC_AUTH)\n"
        f"  Metrics  {base}/metrics   celery-exporter http://127.0.0.1:{cfg.exporter_port}/metrics\n"
        f"  Razorpay {cfg.razorpay_base_url}\n"
        f"  Redis    {redis_url}\n"
        f"  MongoDB  {mongo_url}\n"
        f"  Ctrl-C stops everything.\n",
        flush=True,
    )


def run() -> int:
    cfg = settings()
    run_dir = cfg.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = Manager()

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_dir = cfg.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis_url = f"redis://127.0.0.1:{REDIS_PORT}/0"
        manager.add_process("redis", "exec " + shlex.join(servers.redis_command(REDIS_PORT, redis_dir)))
    mongo_url = os.environ.get("MONGO_URL")
    if not mongo_url:
        mongo_dir = cfg.data_dir / "mongo"
        mongo_dir.mkdir(parents=True, exist_ok=True)
        mongo_url = f"mongodb://127.0.0.1:{MONGO_PORT}"
        # quiet: it logs every command; the log file keeps them.
        manager.add_process("mongo", "exec " + shlex.join(servers.mongo_command(MONGO_PORT, mongo_dir)),
                            quiet=True)

    # The local sandbox stands in for Razorpay; set RAZORPAY_BASE_URL and keys for the real one.
    own_sandbox = not os.environ.get("RAZORPAY_BASE_URL")
    if own_sandbox:
        os.environ["RAZORPAY_BASE_URL"] = f"http://127.0.0.1:{RAZORPAY_PORT}"
    env = servers.process_env(redis_url, mongo_url)
    os.environ.update({"REDIS_URL": redis_url, "MONGO_URL": mongo_url})
    settings.cache_clear()
    cfg = settings()
    if own_sandbox:
        webhook_url = f"http://{cfg.api_host}:{cfg.api_port}/webhooks/razorpay"
        manager.add_process("razorpay", "exec " + shlex.join(sandbox_command(cfg, webhook_url=webhook_url)),
                            env={**env, **sandbox_env(cfg)})

    # stack/gunicorn_conf.py gives each gunicorn its own metrics directory (/metrics sums its workers).
    manager.add_process("api", "exec " + shlex.join(api_command(cfg)), env=env)
    # Live order updates (/ws/): the same app under gevent, a greenlet per socket.
    manager.add_process("ws", "exec " + shlex.join(ws_command(cfg)), env=env)
    for pool in POOLS:
        manager.add_process(pool.name, "exec " + shlex.join(worker_command(pool)), env=env)
    if os.environ.get("KIRANA_STACK_MESSAGING", "1") == "1":
        # Local stand-ins for the SMS/push gateways and an SMTP server (mail readable at :8025/messages).
        manager.add_process("messaging", "exec " + shlex.join(messaging_command(cfg)),
                            env={**env, **messaging_env(cfg)}, quiet=True)
        manager.add_process("mailbox", "exec " + shlex.join(mailbox_command(cfg, MAILBOX_HTTP_PORT)), env=env,
                            quiet=True)
    manager.add_process("outbox", "exec " + shlex.join(outbox_relay_command()), env=env)
    manager.add_process("beat", "exec " + shlex.join(beat_command(str(run_dir / "celerybeat-schedule"))), env=env)
    manager.add_process("flower", "exec " + shlex.join(flower_command(cfg)), env=env)
    if EXPORTER_PYTHON.exists():
        manager.add_process("exporter", "exec " + shlex.join(exporter_command(cfg)), env=env)
    else:
        print(f"celery-exporter not started: {EXPORTER_PYTHON} is missing (make exporter)", flush=True)

    _pid_file(cfg).write_text(str(os.getpid()))
    threading.Thread(target=_setup_and_announce, args=(cfg, redis_url, mongo_url), daemon=True).start()
    try:
        manager.loop()
    finally:
        _pid_file(cfg).unlink(missing_ok=True)
    return manager.returncode or 0


def stop() -> int:
    pid_file = _pid_file(settings())
    if not pid_file.exists():
        print("no stack is running (no var/run/stack.pid)")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        print(f"stack {pid} was not running; removed its pid file")
        return 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"stopped stack {pid}")
            return 0
        time.sleep(0.2)
    print(f"stack {pid} still running after 30s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else "run"
    if verb not in {"run", "stop"}:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run() if verb == "run" else stop())
