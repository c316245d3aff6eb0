"""Dead letters over the API and the CLI: work that gave up is kept, replayed once, or discarded."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kirana import dead_letters
from kirana.permissions import Role
from kirana.seed import STORES
from stack import servers
from tests.harness import Client

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STORE = STORES[0]["_id"]


def _wait_letter(stack, order_id: str, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (letter := stack.db[dead_letters.DEAD_LETTERS].find_one({"order_id": order_id})) is None:
        assert time.monotonic() < deadline, f"no dead letter for {order_id}"
        time.sleep(0.2)
    return letter


def _paid_order_whose_capture_gives_up(stack, customer: Client) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    stack.sandbox.control(capture_failures=1000, capture_failure_status=503, webhook_mode="drop")
    product = stack.db["products"].find_one({"store_id": STORE, "stock": {"$gte": 5}})
    order_id = customer.submit({"store_id": STORE, "payment_method": "card",
                                "items": [{"sku": product["sku"], "qty": 1}]}).json()["id"]
    deadline = time.monotonic() + 20
    while (order := customer.order(order_id))["status"] != "awaiting_payment":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    paid = stack.sandbox.checkout(order["payment"]["razorpay_order_id"], "authorize", method="card")
    customer.http.post(customer.url("/api/v1/payments/verify"), json={
        k: paid[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}, timeout=10)
    return order_id, paid


def test_a_capture_that_gives_up_is_dead_lettered_and_its_replay_completes_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    ops = stack.user(Role.OPS)
    try:
        order_id, paid = _paid_order_whose_capture_gives_up(stack, customer)
        letter = _wait_letter(stack, order_id)
    finally:
        stack.sandbox.reset()  # the cause is fixed

    listed = ops.http.get(ops.url("/api/v1/dead-letters"), params={"task": "payments.capture", "status": "open"},
                          timeout=10).json()
    shown = ops.http.get(ops.url(f"/api/v1/dead-letters/{letter['_id']}"), timeout=10).json()
    replayed = ops.http.post(ops.url(f"/api/v1/dead-letters/{letter['_id']}/replay"), timeout=10)
    again = ops.http.post(ops.url(f"/api/v1/dead-letters/{letter['_id']}/replay"), timeout=10)

    assert letter["exc_type"] == "GatewayUnavailable" and letter["attempts"] == stack.cfg.task_max_retries + 1
    assert letter["payment_id"].startswith(order_id) and letter["queue"] == "payments"
    assert letter["_id"] in [item["id"] for item in listed["items"]]
    assert "Traceback" in shown["traceback"]
    assert replayed.status_code == 202 and replayed.json()["status"] == "replayed"
    assert again.status_code == 409
    deadline = time.monotonic() + 20
    while customer.order(order_id)["status"] != "confirmed":
        assert time.monotonic() < deadline, "the replay did not complete the order"
        time.sleep(0.1)
    assert stack.sandbox.stats()["captures"].get(paid["razorpay_payment_id"]) == 1
    metrics = stack_metrics(stack)
    assert 'kirana_dead_letters_total{task="payments.capture"}' in metrics
    assert "kirana_outbox_backlog" in metrics


def stack_metrics(stack) -> str:  # type: ignore[no-untyped-def]
    import requests

    return requests.get(stack.url("/metrics"), timeout=10).text


def test_dead_letters_are_for_ops_only(stack, customer) -> None:  # type: ignore[no-untyped-def]
    assert customer.http.get(customer.url("/api/v1/dead-letters"), timeout=10).status_code == 403


def _cli(stack, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = servers.process_env(stack.cfg.redis_url, stack.cfg.mongo_url)
    return subprocess.run([sys.executable, "-m", "tasks.dead_letters", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_lists_shows_and_discards(stack, customer) -> None:  # type: ignore[no-untyped-def]
    try:
        order_id, _ = _paid_order_whose_capture_gives_up(stack, customer)
        letter = _wait_letter(stack, order_id)
    finally:
        stack.sandbox.reset()

    listed = _cli(stack, "list", "--status", "open")
    shown = _cli(stack, "show", letter["_id"])
    discarded = _cli(stack, "discard", letter["_id"])
    twice = _cli(stack, "discard", letter["_id"])
    replay_discarded = _cli(stack, "replay", letter["_id"])

    assert listed.returncode == 0 and letter["_id"] in listed.stdout
    assert shown.returncode == 0 and '"exc_type": "GatewayUnavailable"' in shown.stdout
    assert discarded.returncode == 0
    assert twice.returncode == 1 and "discarded" in twice.stderr
    assert replay_discarded.returncode == 1
    assert stack.db[dead_letters.DEAD_LETTERS].find_one({"_id": letter["_id"]})["status"] == "discarded"


def _letters(stack, kind: str, n: int, *, task: str = "search.sweep") -> list[str]:  # type: ignore[no-untyped-def]
    """`n` open letters of a harmless task (an indexer sweep), told apart by their error class."""
    return [dead_letters.record(stack.db, task_id=f"bulk-{uuid.uuid4().hex}", task=task, args=[], kwargs={},
                                queue=task.partition(".")[0], exc_type=kind, message="bulk test", traceback="",
                                attempts=4, reason="retries_exhausted")["_id"] for _ in range(n)]


def _audited(stack, action: str, kind: str, timeout: float = 20) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := list(stack.db["audit_log"].find({"action": action, "detail.selection.exc_type": kind}))):
        assert time.monotonic() < deadline, f"no {action} audited"
        time.sleep(0.2)
    return found


def test_dead_letters_in_bulk_dry_run_discard_and_a_paced_replay_each_audited_once(stack) -> None:  # type: ignore[no-untyped-def]
    ops = stack.user(Role.OPS)
    replay_kind, discard_kind = f"BulkReplay{uuid.uuid4().hex[:8]}", f"BulkDiscard{uuid.uuid4().hex[:8]}"
    to_replay, to_discard = _letters(stack, replay_kind, 4), _letters(stack, discard_kind, 3)
    url = ops.url("/api/v1/dead-letter-actions")

    dry = ops.http.post(url, json={"action": "replay", "dry_run": True, "exc_type": replay_kind}, timeout=10)
    after_dry = {d["_id"]: d["status"] for d in stack.db[dead_letters.DEAD_LETTERS].find({"_id": {"$in": to_replay}})}
    discarded = ops.http.post(url, json={"action": "discard", "exc_type": discard_kind, "task": "search.sweep"},
                              timeout=10)
    replayed = ops.http.post(url, json={"action": "replay", "exc_type": replay_kind, "per_second": 4}, timeout=10)

    assert dry.status_code == 200 and dry.json()["count"] == 4 and len(dry.json()["sample"]) == 4, dry.text
    assert after_dry == dict.fromkeys(to_replay, "open")  # a dry run changes nothing
    assert discarded.status_code == 200 and discarded.json()["count"] == 3, discarded.text
    assert replayed.status_code == 202 and replayed.json()["job_id"], replayed.text
    deadline = time.monotonic() + 30
    while stack.db[dead_letters.DEAD_LETTERS].count_documents({"_id": {"$in": to_replay}, "status": "replayed"}) < 4:
        assert time.monotonic() < deadline, "the bulk replay did not replay every letter"
        time.sleep(0.2)
    replays = sorted(d["replayed_at_ms"] for d in stack.db[dead_letters.DEAD_LETTERS].find({"_id": {"$in": to_replay}}))
    assert replays[-1] - replays[0] >= 600  # 4 at 4/s: paced over at least ~0.75 s
    assert stack.db[dead_letters.DEAD_LETTERS].count_documents({"_id": {"$in": to_discard}, "status": "discarded"}) == 3
    assert [a["detail"]["count"] for a in _audited(stack, "dead_letters.replay_bulk", replay_kind)] == [4]
    assert [a["detail"]["count"] for a in _audited(stack, "dead_letters.discarded_bulk", discard_kind)] == [3]


def test_a_bulk_action_refuses_a_customer_and_a_backwards_time_range(stack, customer) -> None:  # type: ignore[no-untyped-def]
    ops = stack.user(Role.OPS)
    body = {"action": "discard", "failed_from_ms": 2_000, "failed_until_ms": 1_000}

    assert customer.http.post(customer.url("/api/v1/dead-letter-actions"), json={"action": "discard"},
                              timeout=10).status_code == 403
    bad = ops.http.post(ops.url("/api/v1/dead-letter-actions"), json=body, timeout=10)
    assert bad.status_code == 422 and bad.headers["Content-Type"].startswith("application/problem+json"), bad.text


def test_the_cli_replays_in_bulk_by_filter_after_a_dry_run(stack) -> None:  # type: ignore[no-untyped-def]
    kind = f"BulkCli{uuid.uuid4().hex[:8]}"
    letters = _letters(stack, kind, 3)
    other = _letters(stack, f"Other{kind}", 1)

    dry = _cli(stack, "bulk", "replay", "--exc-type", kind, "--dry-run")
    done = _cli(stack, "bulk", "replay", "--exc-type", kind, "--per-second", "50")

    assert dry.returncode == 0 and "3 open dead letter(s)" in dry.stdout, dry.stdout + dry.stderr
    assert done.returncode == 0 and "replay: 3" in done.stdout, done.stdout + done.stderr
    statuses = {d["_id"]: d["status"] for d in stack.db[dead_letters.DEAD_LETTERS].find(
        {"_id": {"$in": letters + other}})}
    assert statuses == {**dict.fromkeys(letters, "replayed"), other[0]: "open"}
    assert [a["detail"]["count"] for a in _audited(stack, "dead_letters.replay_bulk", kind)] == [3]
