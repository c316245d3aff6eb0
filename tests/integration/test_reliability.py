"""Run-once locks, the outbox and its relay, against real Redis and MongoDB."""

from __future__ import annotations

import time
import uuid

import pytest

from kirana import locks, outbox
from kirana.clock import now_ms


def test_a_second_holder_is_refused_until_the_lock_is_released_or_expires(redis_client) -> None:  # type: ignore[no-untyped-def]
    name = f"job-{uuid.uuid4().hex[:6]}"
    first = locks.acquire(redis_client, name, ttl_s=1)
    assert first is not None
    assert locks.acquire(redis_client, name, ttl_s=1) is None
    assert locks.holder(redis_client, name) == first.token

    time.sleep(1.1)
    second = locks.acquire(redis_client, name, ttl_s=5)

    assert second is not None and second.token > first.token
    assert locks.release(redis_client, first) is False, "an expired holder must not free the new holder's lock"
    assert locks.release(redis_client, second) is True


def test_a_stale_holder_cannot_record_over_a_newer_run(redis_client, database) -> None:  # type: ignore[no-untyped-def]
    name = f"job-{uuid.uuid4().hex[:6]}"
    old = locks.Lock(name, 5)
    new = locks.Lock(name, 6)

    assert locks.record_run(database, new, "done") is True
    assert locks.record_run(database, old, "late") is False
    assert database[locks.JOBS].find_one({"_id": name})["outcome"] == "done"


def test_run_once_skips_and_says_so_while_another_run_holds_the_lock(redis_client, mongo_server) -> None:  # type: ignore[no-untyped-def]
    from tasks.reliability import run_once

    name = f"job-{uuid.uuid4().hex[:6]}"
    calls: list[int] = []

    @run_once(name, ttl_s=30)
    def job() -> str:
        calls.append(1)
        return "ran"

    held = locks.acquire(redis_client, name, ttl_s=30)
    skipped = job()
    locks.release(redis_client, held)
    ran = job()

    assert skipped == {"skipped": f"{name} is already running (token {held.token})"}
    assert ran == "ran" and calls == [1]


def test_the_outbox_hands_out_due_entries_oldest_first(database) -> None:  # type: ignore[no-untyped-def]
    later = outbox.add(database, "orders.process", ["ord_later"], due_at_ms=now_ms() + 60_000)
    first = outbox.add(database, "orders.process", ["ord_first"])
    second = outbox.add(database, "orders.process", ["ord_second"])

    due = [e["_id"] for e in outbox.due(database, limit=10)]

    assert due == [first, second] and later not in due
    assert outbox.mark_sent(database, first, "task-1") is True
    assert outbox.mark_sent(database, first, "task-2") is False
    assert outbox.backlog(database) == 2


@pytest.mark.usefixtures("redis_server")
def test_the_relay_sends_pending_entries_and_marks_them_sent(monkeypatch, database) -> None:  # type: ignore[no-untyped-def]
    from kirana import db
    from tasks import outbox_relay

    monkeypatch.setattr(db, "database", lambda cfg=None: database)
    entry = outbox.add(database, "orders.requeue_stuck", [])

    assert outbox_relay.relay_once() == 1

    sent = database[outbox.OUTBOX].find_one({"_id": entry})
    assert sent["status"] == "sent" and sent["task_id"]
