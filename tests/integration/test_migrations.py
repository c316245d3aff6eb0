"""Migrations against a real server: up/down/up, resumable data changes, the lock, validate, history."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo.database import Database

from kirana import db as collections
from kirana.backups import jobs
from kirana.config import ROOT, settings
from migrations import lock, runner
from migrations.backfill import PROGRESS, Context, progress_of
from migrations.steps import Step, index
from migrations.versions import HEAD, STEPS

QUIET = Context(show_progress=False, log=lambda line: None)


@pytest.fixture
def bare(mongo_server: str) -> Iterator[Database]:
    """An empty database: no collections, no indexes (unlike the `database` fixture)."""
    client = collections.client()
    name = f"m_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)


def _runner(database: Database, **kwargs) -> runner.Runner:  # type: ignore[no-untyped-def]
    return runner.Runner(database, by="test", ctx=kwargs.pop("ctx", QUIET), log=lambda line: None, **kwargs)


def _populate(database: Database) -> None:
    database["orders"].insert_many([{"_id": f"ord_{i:04d}", "idempotency_key": f"auto:ord_{i:04d}",
                                     "status": "confirmed", "created_at_ms": i} for i in range(50)])
    database["users"].insert_many([{"_id": f"usr_{i}", "email": f"u{i}@example.in"} for i in range(5)])
    database["payments"].insert_one({"_id": "ord_0001:p1", "status": "captured"})
    database["loyalty_ledger"].insert_one({"_id": "l1", "points": 10})


def test_up_on_an_empty_database_builds_every_version_and_validates(bare: Database) -> None:
    done = _runner(bare).up()

    assert done == list(range(1, HEAD + 1))
    assert runner.validate(bare) == []
    assert runner.current(bare) == HEAD
    record = bare[runner.HISTORY].find_one({"version": 2})
    assert record["direction"] == "up" and record["checksum"] == STEPS[1].checksum() and record["by"] == "test"
    assert record["duration_ms"] >= 0 and record["applied_at"] is not None
    assert collections.index_keys(bare, "users")[(("email", 1),)] is True
    assert _runner(bare).up() == []  # nothing left to do


def test_up_down_up_round_trip_on_a_populated_database(bare: Database, tmp_path: Path) -> None:
    cfg = dataclasses.replace(settings(), backup_dir=str(tmp_path))
    backups: list[str] = []

    def backup(database: Database) -> str:
        backups.append(jobs.run(database, by="test", reason="before migrations", cfg=cfg)["backup_id"])
        return backups[-1]

    _runner(bare).up(to=7)
    _populate(bare)
    orders_before = list(bare["orders"].find({}).sort("_id", 1))

    rolled = _runner(bare, backup=backup).down(to=1)

    assert rolled == [7, 6, 5, 4, 3, 2]
    assert len(backups) == 1 and jobs.find(backups[0], cfg)
    assert runner.current(bare) == 1 and runner.validate(bare) == []
    assert not {"users", "payments", "loyalty_ledger", "devices", "backups"} & set(bare.list_collection_names())
    assert (("status", 1), ("pay_by_ms", 1)) not in collections.index_keys(bare, "orders")  # v3's index on v1's orders
    assert list(bare["orders"].find({}).sort("_id", 1)) == orders_before

    assert _runner(bare).up(to=7) == [2, 3, 4, 5, 6, 7]
    assert runner.validate(bare) == []
    assert list(bare["orders"].find({}).sort("_id", 1)) == orders_before
    directions = [(r["version"], r["direction"]) for r in runner.history(bare) if r["version"] == 3]
    assert directions == [(3, "up"), (3, "down"), (3, "up")]


def test_down_refuses_an_irreversible_step_and_changes_nothing(bare: Database) -> None:
    _runner(bare).up()
    taken: list[str] = []

    with pytest.raises(runner.Irreversible, match="v8"):
        _runner(bare, backup=lambda d: taken.append("x") or "x").down(to=3)

    assert runner.current(bare) == HEAD and runner.validate(bare) == [] and taken == []
    assert bare[lock.LOCK].find_one({}) is None  # released


def test_down_without_a_backup_refuses_to_drop_documents(bare: Database) -> None:
    _runner(bare).up(to=7)
    _populate(bare)

    with pytest.raises(runner.WouldLoseData, match="users"):
        _runner(bare).down(to=1)
    bare["loyalty_ledger"].delete_many({})
    assert _runner(bare).down(to=4) == [7, 6, 5]  # empty collections may go without a backup


def test_an_interrupted_data_migration_resumes_without_applying_twice(bare: Database) -> None:
    _runner(bare).up(to=7)
    bare["orders"].insert_many([{"_id": f"ord_{i:05d}", "status": "confirmed"} for i in range(1050)])
    bare["orders"].insert_one({"_id": "ord_00500x", "idempotency_key": "cust_1:client-key"})  # already keyed
    batches: list[int] = []

    def stop_after_three() -> None:
        batches.append(1)
        if len(batches) == 3:
            raise KeyboardInterrupt("operator pressed Ctrl-C")

    with pytest.raises(KeyboardInterrupt):
        _runner(bare, ctx=Context(batch=100, after_batch=stop_after_three, show_progress=False,
                                  log=lambda line: None)).up(to=8)

    progress = progress_of(bare, "v8.orders.idempotency_key")
    assert runner.current(bare) == 7 and bare[lock.LOCK].find_one({}) is None
    assert progress["cursor"] == "ord_00299" and progress["done"] == 300 and "finished_at_ms" not in progress
    assert bare["orders"].count_documents({"idempotency_key": {"$exists": True}}) == 301

    resumed = Context(batch=100, after_batch=lambda: batches.append(1), show_progress=False, log=lambda line: None)
    assert _runner(bare, ctx=resumed).up(to=8) == [8]

    progress = progress_of(bare, "v8.orders.idempotency_key")
    assert progress["done"] == 1050 and progress["batches"] == 11  # 3 before, 8 after: none twice
    assert len(batches) == 3 + 8
    assert bare["orders"].count_documents({"idempotency_key": {"$exists": False}}) == 0
    assert bare["orders"].find_one({"_id": "ord_00777"})["idempotency_key"] == "auto:ord_00777"
    assert bare["orders"].find_one({"_id": "ord_00500x"})["idempotency_key"] == "cust_1:client-key"
    assert runner.validate(bare) == []  # the cursor's collection is the runner's own, not drift
    assert bare[PROGRESS].count_documents({}) == 1


entered = threading.Event()
release_first = threading.Event()


def _hold_the_lock(database: Database, ctx: Context) -> None:
    entered.set()
    assert release_first.wait(20)


def test_two_concurrent_ups_apply_once_and_the_second_waits_or_refuses(bare: Database) -> None:
    entered.clear()
    release_first.clear()
    slow = (*STEPS[:1], Step(2, "slow", collections=("slow",), indexes=(index("slow", "x"),),
                             data_up=_hold_the_lock, irreversible="a test step that only waits for a signal"))
    results: dict[str, object] = {}

    def run(name: str, wait_s: float) -> None:
        try:
            results[name] = _runner(bare, steps=slow, wait_s=wait_s).up()
        except lock.LockHeld as exc:
            results[name] = exc

    first = threading.Thread(target=run, args=("first", 0))
    first.start()
    assert entered.wait(20)
    run("refused", 0)  # does not wait: refused at once
    waiter = threading.Thread(target=run, args=("waiter", 30))
    waiter.start()
    release_first.set()
    first.join(30)
    waiter.join(30)

    assert results["first"] == [1, 2]
    assert isinstance(results["refused"], lock.LockHeld)
    assert results["waiter"] == []  # waited, then found nothing left to do
    assert sorted(r["version"] for r in runner.history(bare)) == [1, 2]


def test_an_expired_lease_can_be_taken_over_and_the_old_owner_notices(bare: Database) -> None:
    assert lock.acquire(bare, "a")
    assert not lock.acquire(bare, "b")
    # "a" died: its lease runs out.
    bare[lock.LOCK].update_one({"_id": lock.LOCK_ID}, {"$set": {"expires_at_ms": 0}})

    assert lock.acquire(bare, "b")
    with pytest.raises(lock.LockLost):
        lock.renew(bare, "a")
    lock.release(bare, "a")  # a stale owner cannot free someone else's lease
    assert bare[lock.LOCK].find_one({"_id": lock.LOCK_ID})["owner"] == "b"


def test_validate_reports_drift_and_changed_checksums(bare: Database) -> None:
    _runner(bare).up()
    bare["orders"].drop_index(_name(bare, "orders", (("customer_id", 1), ("created_at_ms", 1))))
    bare["orders"].create_index([("coupon", 1)])
    bare.create_collection("scratch")
    edited = [dataclasses.replace(s, name=s.name + " (edited)") if s.version == 2 else s for s in STEPS]

    problems = runner.validate(bare, edited)

    assert "index orders (customer_id, created_at_ms): missing" in problems
    assert "index orders (coupon): not declared by any applied version" in problems
    assert "collection scratch: not declared by any applied version" in problems
    assert any(p.startswith("v2 (access control") and "changed after it was applied" in p for p in problems)
    assert runner.status(bare, edited)[1].checksum_changed


def _name(database: Database, collection: str, keys: tuple[tuple[str, int], ...]) -> str:
    return next(n for n, spec in database[collection].index_information().items()
                if tuple((f, int(d)) for f, d in spec["key"]) == keys)


def _cli(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MONGO_DB": database.name}
    return subprocess.run([sys.executable, "-m", "migrations", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli(bare: Database) -> None:
    assert _cli(bare, "plan").stdout.startswith("up v1: base")
    up = _cli(bare, "up", "--no-backup")
    assert up.returncode == 0 and f"now at v{HEAD}" in up.stdout, up.stderr
    assert _cli(bare, "validate").returncode == 0
    status = _cli(bare, "status")
    assert f"at v{HEAD} of v{HEAD}" in status.stdout and "pending" not in status.stdout
    bare["payments"].drop_index(_name(bare, "payments", (("razorpay_order_id", 1),)))
    drift = _cli(bare, "validate")
    assert drift.returncode == 1 and "index payments (razorpay_order_id): missing" in drift.stderr
    down = _cli(bare, "down", "--to", "7", "--no-backup")
    assert down.returncode == 1 and "irreversible" in down.stderr
    bare[lock.LOCK].insert_one({"_id": lock.LOCK_ID, "owner": "elsewhere", "expires_at_ms": 2**53})
    assert _cli(bare, "up", "--no-backup").returncode == 3


def test_v10_moves_each_orders_events_into_the_order_and_rolls_back_without_loss(bare: Database) -> None:
    from kirana import orders
    from kirana.orders import Status

    _runner(bare).up(to=9)
    bare["orders"].insert_many([
        {"_id": "ord_cash", "status": "confirmed", "idempotency_key": "auto:ord_cash", "updated_at_ms": 30},
        {"_id": "ord_upi", "status": "reserved", "idempotency_key": "auto:ord_upi", "payment_attempt": 2,
         "updated_at_ms": 60},
        # No event for where it stands: its status becomes its last event.
        {"_id": "ord_bare", "status": "confirmed", "idempotency_key": "auto:ord_bare", "updated_at_ms": 70},
    ])
    bare["order_events"].insert_many([
        {"_id": "ord_cash:accepted", "order_id": "ord_cash", "status": "accepted", "seq": 0, "at_ms": 10},
        {"_id": "ord_cash:processing", "order_id": "ord_cash", "status": "processing", "seq": 1, "at_ms": 20},
        {"_id": "ord_cash:confirmed", "order_id": "ord_cash", "status": "confirmed", "seq": 5, "at_ms": 30,
         "detail": {"total_paise": 900}},
        {"_id": "ord_upi:accepted", "order_id": "ord_upi", "status": "accepted", "seq": 0, "at_ms": 40},
        {"_id": "ord_upi:reserved:1", "order_id": "ord_upi", "status": "reserved", "seq": 2, "at_ms": 50},
        {"_id": "ord_upi:payment_failed:1", "order_id": "ord_upi", "status": "payment_failed", "seq": 4,
         "at_ms": 55},
        {"_id": "ord_upi:reserved:2", "order_id": "ord_upi", "status": "reserved", "seq": 2, "at_ms": 60},
    ])
    archive = list(bare["order_events"].find({}).sort("_id", 1))

    assert _runner(bare).up(to=10) == [10]

    cash = bare["orders"].find_one({"_id": "ord_cash"})
    assert [(e["status"], e["at_ms"]) for e in orders.history(cash)] == [
        ("accepted", 10), ("processing", 20), ("confirmed", 30)]
    assert cash["history"]["confirmed"]["detail"] == {"total_paise": 900}
    upi = bare["orders"].find_one({"_id": "ord_upi"})
    assert set(upi["history"]) == {"accepted", "reserved-1", "payment_failed-1", "reserved-2"}
    assert [e["status"] for e in orders.history(bare["orders"].find_one({"_id": "ord_bare"}))] == ["confirmed"]
    assert runner.validate(bare) == []

    # Written after v10: only in the order's history.
    assert orders.move(bare, "ord_cash", Status.CONFIRMED, Status.OUT_FOR_DELIVERY) is not None
    assert _runner(bare).down(to=9) == [10]

    assert bare["orders"].count_documents({"history": {"$exists": True}}) == 0
    back = {e["_id"]: e for e in bare["order_events"].find({})}
    assert {e["_id"] for e in archive} < set(back)
    assert back["ord_cash:out_for_delivery"]["order_id"] == "ord_cash"
    assert back["ord_upi:reserved:2"] == next(e for e in archive if e["_id"] == "ord_upi:reserved:2")

    assert _runner(bare).up(to=10) == [10]
    again = bare["orders"].find_one({"_id": "ord_cash"})
    assert [e["status"] for e in orders.history(again)] == ["accepted", "processing", "confirmed", "out_for_delivery"]


def test_v11_ends_the_sessions_whose_refresh_token_was_stored_in_clear(bare: Database) -> None:
    from kirana import tokens

    _runner(bare).up(to=10)
    hashed = tokens._hash("a token the client holds")
    bare["sessions"].insert_many([
        {"_id": "ses_hashed", "user_id": "u1", "refresh_hash": hashed, "expires_at_ms": 2**40},
        # What the refresh of before v11 stored: the client's next token itself.
        {"_id": "ses_clear", "user_id": "u2", "refresh_hash": "Zl3xq0n2u9m1v8w7e6r5t4y3u2i1o0p9a8s7d6f5g4h",
         "previous_hash": hashed, "expires_at_ms": 2**40},
        {"_id": "ses_ended", "user_id": "u3", "refresh_hash": "plain", "revoked_at_ms": 5, "expires_at_ms": 2**40},
    ])

    assert _runner(bare).up(to=11) == [11]

    found = {s["_id"]: s for s in bare["sessions"].find({})}
    assert "revoked_at_ms" not in found["ses_hashed"] and found["ses_hashed"]["refresh_hash"] == hashed
    assert found["ses_clear"]["revoked_at_ms"] > 0 and found["ses_clear"]["refresh_hash"] == ""
    assert found["ses_ended"]["revoked_at_ms"] == 5
    assert runner.validate(bare) == []
    assert _runner(bare).down(to=10) == [11]  # nothing to undo: ended sessions stay ended
    assert bare["sessions"].find_one({"_id": "ses_clear"})["revoked_at_ms"] > 0


def test_v12_gives_open_sessions_their_accounts_role_and_store_and_remembers_the_rotated_token(
        bare: Database) -> None:
    from kirana import tokens

    _runner(bare).up(to=11)
    bare["users"].insert_many([{"_id": "u1", "email": "o@example.in", "role": "store_owner", "store_id": "s1"},
                               {"_id": "u2", "email": "c@example.in", "role": "customer"}])
    spent = tokens._hash("a token rotated away before v12")
    bare["sessions"].insert_many([
        {"_id": "ses_owner", "user_id": "u1", "refresh_hash": tokens._hash("now"), "previous_hash": spent,
         "expires_at_ms": 2**40},
        {"_id": "ses_customer", "user_id": "u2", "refresh_hash": tokens._hash("c"), "expires_at_ms": 2**40},
        {"_id": "ses_orphan", "user_id": "u9", "refresh_hash": tokens._hash("o"), "expires_at_ms": 2**40},
    ])

    assert _runner(bare).up(to=12) == [12]

    found = {s["_id"]: s for s in bare["sessions"].find({})}
    assert (found["ses_owner"]["role"], found["ses_owner"]["store_id"]) == ("store_owner", "s1")
    assert (found["ses_customer"]["role"], found["ses_customer"]["store_id"]) == ("customer", None)
    assert found["ses_orphan"]["revoked_at_ms"] > 0 and "role" not in found["ses_orphan"]
    assert bare[tokens.SPENT].find_one({"_id": spent})["session_id"] == "ses_owner"
    assert runner.validate(bare) == []
    assert _runner(bare, backup=lambda d: "a backup").down(to=11) == [12]
    assert tokens.SPENT not in bare.list_collection_names()


def test_v13_keys_stored_webhook_events_by_their_body_and_makes_the_key_unique(bare: Database) -> None:
    import json

    from kirana import webhooks

    _runner(bare).up(to=12)
    body = json.dumps({"event": "payment.captured", "payload": {"payment": {"entity": {"id": "pay_1",
                                                                                       "status": "captured"}}}})
    bare["webhook_events"].insert_many([
        {"_id": "evt_1", "event": "payment.captured", "body": body, "status": "handled", "received_at_ms": 1},
        # The same body re-posted under another id before v13: stored twice then.
        {"_id": "evt_2", "event": "payment.captured", "body": body, "status": "handled", "received_at_ms": 2},
        {"_id": "evt_3", "event": "account.updated", "body": "{}", "status": "ignored", "received_at_ms": 3},
    ])

    assert _runner(bare).up(to=13) == [13]

    keys = {d["_id"]: d["dedupe_key"] for d in bare["webhook_events"].find({})}
    fresh = webhooks.prepare(body.encode(), "evt_new")
    assert keys["evt_1"] == fresh["dedupe_key"]  # what the code of v13 computes for the same body
    assert keys["evt_2"] == f"{fresh['dedupe_key']}:dup:evt_2"
    assert keys["evt_3"].startswith("account.updated:sha256:")
    assert webhooks.store(bare, body.encode(), "evt_new") == ("evt_new", False)
    assert runner.validate(bare) == []
    assert _runner(bare).down(to=12) == [13]


def test_v15_keys_sync_operations_by_user_and_device_and_keeps_their_order_keys(bare: Database) -> None:
    from kirana import sync

    _runner(bare).up(to=14)
    bare["sync_operations"].insert_many([
        {"_id": "dev1:o1", "device_id": "dev1", "user_id": "u1", "op_id": "o1", "status": "applied",
         "batch_id": "b-client", "seq": 1, "client_at_ms": 1, "arrival_ms": 1, "arrival_index": 0},
        {"_id": "dev1:o2", "device_id": "dev1", "user_id": "u1", "op_id": "o2", "status": "pending",
         "batch_id": "syb_1", "seq": 2, "client_at_ms": 2, "arrival_ms": 2, "arrival_index": 0},
    ])
    bare["sync_batches"].insert_many([
        {"_id": "b-client", "user_id": "u1", "device_id": "dev1", "op_keys": ["dev1:o1"], "status": "applied"},
        {"_id": "syb_1", "user_id": "u1", "device_id": "dev1", "op_keys": ["dev1:o2"], "status": "pending"},
    ])

    assert _runner(bare).up(to=15) == [15]

    ops = {o["_id"]: o for o in bare["sync_operations"].find({})}
    assert set(ops) == {sync.op_key("u1", "dev1", "o1"), sync.op_key("u1", "dev1", "o2")}
    # The order an applied operation placed is found again under the key it was placed with.
    assert ops[sync.op_key("u1", "dev1", "o1")]["idempotency_key"] == "sync:dev1:o1"
    batches = {b["_id"]: b for b in bare["sync_batches"].find({})}
    assert batches["b-client"]["op_keys"] == [sync.op_key("u1", "dev1", "o1")]
    assert batches["b-client"]["client_batch_id"] == "b-client" and batches["syb_1"]["client_batch_id"] is None
    assert sync.get_batch(bare, "u1", "b-client")["_id"] == "b-client"  # the old id still answers
    assert sync.pending_ops(bare, "u1", "dev1")[0]["op_id"] == "o2"
    assert runner.validate(bare) == []

    assert _runner(bare).down(to=14) == [15]
    assert {o["_id"] for o in bare["sync_operations"].find({})} == {"dev1:o1", "dev1:o2"}
    assert bare["sync_batches"].find_one({"_id": "syb_1"})["op_keys"] == ["dev1:o2"]
