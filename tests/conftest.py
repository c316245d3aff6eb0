"""Fixtures: private redis-server and nx-27017, isolated databases, a live stack.

The servers are started on free ports with their own data directories, so
the tests never touch the machine's own Redis or MongoDB. Set REDIS_URL and
MONGO_URL to run the same suite against real servers instead.

The environment is set here, at import, because kirana.config reads it once
per process and the worker processes inherit it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import servers

RUN_DIR = Path(tempfile.mkdtemp(prefix="kirana-tests-"))
_OWN_REDIS_PORT = None if os.environ.get("REDIS_URL") else servers.free_port()
_OWN_MONGO_PORT = None if os.environ.get("MONGO_URL") else servers.free_port()
if _OWN_REDIS_PORT:
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{_OWN_REDIS_PORT}/0"
if _OWN_MONGO_PORT:
    os.environ["MONGO_URL"] = f"mongodb://127.0.0.1:{_OWN_MONGO_PORT}"
# A database of the suite's own, even on a shared server.
os.environ["MONGO_DB"] = f"kirana_test_{uuid.uuid4().hex[:8]}"
os.environ["KIRANA_DATA_DIR"] = str(RUN_DIR)
os.environ["WORKER_HEARTBEAT_S"] = "1"
os.environ["WORKER_ALIVE_WINDOW_S"] = "5"
os.environ.setdefault("KIRANA_WORKER_LOGLEVEL", "INFO")
# Every test logs in from 127.0.0.1: the per-address lockout is tested on its own.
os.environ["LOGIN_MAX_FAILURES_ADDRESS"] = "100000"
# The suite registers hundreds of users from 127.0.0.1; tests/e2e/test_password_memory.py checks the limit.
os.environ["REGISTER_PER_ADDRESS_PER_HOUR"] = "100000"
# test_live_orders opens 200 sockets as one customer; tests/e2e/test_live_orders.py checks the cap on its own server.
os.environ["WS_MAX_SOCKETS_PER_USER"] = "100000"
# The Razorpay sandbox the stack fixture starts, and gateway settings that make
# its faults quick to provoke: a 2 s slow capture outlasts a 1 s timeout.
os.environ["RAZORPAY_BASE_URL"] = f"http://127.0.0.1:{servers.free_port()}"
os.environ["RAZORPAY_TIMEOUT_S"] = "1"
os.environ["RAZORPAY_WEBHOOK_SECRET_PREVIOUS"] = "kirana-previous-webhook-secret-for-rotation"
os.environ["PAYMENT_RECONCILE_AFTER_S"] = "1"
# The SMS/push sandbox and the SMTP mailbox the stack fixture starts.
os.environ["SMS_BASE_URL"] = os.environ["PUSH_BASE_URL"] = f"http://127.0.0.1:{servers.free_port()}"
os.environ["SMTP_PORT"] = str(servers.free_port())
os.environ["KIRANA_MAILBOX_HTTP_PORT"] = str(servers.free_port())
# Few retries, so work that keeps failing reaches the dead letters within a test.
os.environ["TASK_MAX_RETRIES"] = "3"

from kirana import db  # noqa: E402  (after the environment is set)
from kirana.config import settings  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == 0:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    else:
        print(f"\nserver and worker logs kept in {RUN_DIR}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a Redis the suite may use (its own, unless REDIS_URL was given)."""
    if _OWN_REDIS_PORT is None:
        yield os.environ["REDIS_URL"]
        return
    data = RUN_DIR / "redis"
    data.mkdir(exist_ok=True)
    with servers.Server("redis", servers.redis_command(_OWN_REDIS_PORT, data), _OWN_REDIS_PORT,
                        log=RUN_DIR / "redis.log"):
        yield os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[str]:
    """URL of a MongoDB-compatible server (nx-27017, unless MONGO_URL was given)."""
    if _OWN_MONGO_PORT is None:
        yield os.environ["MONGO_URL"]
        return
    data = RUN_DIR / "mongo"
    data.mkdir(exist_ok=True)
    # KIRANA_TEST_MONGO=ferretdb: FerretDB instead (`make test-ferretdb`; issue 22).
    command = servers.test_mongo_command(_OWN_MONGO_PORT, data)
    with servers.Server("mongo", command, _OWN_MONGO_PORT, log=RUN_DIR / "mongo.out"):
        yield os.environ["MONGO_URL"]


@pytest.fixture
def database(mongo_server: str):  # type: ignore[no-untyped-def]
    """A fresh, indexed database for one test, dropped afterwards."""
    client = db.client()
    name = f"t_{uuid.uuid4().hex[:12]}"
    database = client[name]
    db.ensure_indexes(database)
    yield database
    client.drop_database(name)


@pytest.fixture
def redis_client(redis_server: str):  # type: ignore[no-untyped-def]
    from kirana import redis_conn

    return redis_conn.client()


@pytest.fixture(scope="session")
def stack(redis_server: str, mongo_server: str):  # type: ignore[no-untyped-def]
    """The API under gunicorn and one real worker process per pool, as `make run` starts them."""
    from tests.harness import Stack

    with Stack(RUN_DIR, settings()) as running:
        yield running
