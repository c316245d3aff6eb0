"""The audit hash chain against a real MongoDB-compatible server: appends, races, tampering."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from kirana import audit
from kirana.audit import AUDIT, AUDIT_HEAD, GENESIS_HASH, Break


@pytest.fixture
def log_db(database):  # type: ignore[no-untyped-def]
    """The fixture's database with the audit indexes (until kirana.db.INDEXES declares them)."""
    database[AUDIT].create_index([("event_id", 1)], unique=True)
    database[AUDIT].create_index([("seq", 1)], unique=True)
    return database


def _event(n: int, *, actor: str | None = "user-1", action: str = "login.succeeded", at_ms: int | None = None) -> dict:
    return audit.new_event(action, actor=actor, target=f"target-{n}", detail={"n": n, "note": "नमस्ते"},
                           ip="10.0.0.1", at_ms=1_700_000_000_000 + n if at_ms is None else at_ms)


def _append(db, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    return [audit.append(db, _event(n)) for n in range(1, count + 1)]


def _id(seq: int) -> str:
    return f"{seq:012d}"


def test_appended_entries_form_an_intact_chain(log_db) -> None:  # type: ignore[no-untyped-def]
    entries = _append(log_db, 5)

    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert [e["_id"] for e in entries] == [_id(s) for s in range(1, 6)]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in itertools.pairwise(entries))
    assert audit.verify_report(log_db) == (5, None)
    assert audit.verify(log_db) is None
    head = log_db[AUDIT_HEAD].find_one({"_id": "head"})
    assert (head["seq"], head["hash"]) == (5, entries[-1]["hash"])
    stored = log_db[AUDIT].find_one({"_id": _id(3)})
    assert stored["detail"] == {"n": 3, "note": "नमस्ते"} and stored["recorded_at"].tzinfo is not None


def test_an_empty_log_is_intact(log_db) -> None:  # type: ignore[no-untyped-def]
    assert audit.verify_report(log_db) == (0, None)


def test_an_edited_entry_is_named(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 5)

    log_db[AUDIT].update_one({"_id": _id(3)}, {"$set": {"actor": "someone-else"}})

    assert audit.verify(log_db) == Break(3, _id(3), "entry edited")


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 5)
    forged = log_db[AUDIT].find_one({"_id": _id(3)})
    forged["detail"] = {"n": 3, "note": "changed"}

    log_db[AUDIT].update_one({"_id": _id(3)}, {"$set": {"detail": forged["detail"], "hash": audit.entry_hash(forged)}})

    broken = audit.verify(log_db)
    assert broken is not None and broken.seq == 4 and broken.reason.startswith("chain broken")


def test_a_deleted_middle_entry_is_missing(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 5)

    log_db[AUDIT].delete_one({"_id": _id(3)})

    assert audit.verify_report(log_db) == (2, Break(3, None, "entry 3 missing (deleted)"))


def test_a_deleted_first_entry_is_missing(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 3)

    log_db[AUDIT].delete_one({"_id": _id(1)})

    assert audit.verify(log_db) == Break(1, None, "entry 1 missing (deleted)")


@pytest.mark.parametrize("deleted", [1, 2, 5])
def test_deleted_newest_entries_are_caught_by_the_head(log_db, deleted: int) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 5)

    log_db[AUDIT].delete_many({"seq": {"$gt": 5 - deleted}})

    broken = audit.verify(log_db)
    assert broken is not None and broken.seq == 6 - deleted and broken.entry_id is None
    assert broken.reason.startswith("newest entries deleted")


def test_newest_entries_deleted_and_rewritten_are_caught_by_the_head(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 5)
    log_db[AUDIT].delete_one({"_id": _id(5)})

    # A consistent forgery of the newest entry: only the head can tell.
    audit.append(log_db, _event(99))

    broken = audit.verify(log_db)
    assert broken is not None and broken.seq == 5 and broken.reason.startswith("newest entries deleted and rewritten")


def test_swapped_entries_break_the_chain(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 5)
    second, third = (log_db[AUDIT].find_one({"_id": _id(s)}) for s in (2, 3))
    body = [k for k in second if k not in ("_id", "seq")]

    # Reorder: each entry, hashes included, moves to the other's place in the
    # sequence (event_id is unique, so one of them steps aside first).
    log_db[AUDIT].update_one({"_id": _id(3)}, {"$set": {"event_id": "stepping-aside"}})
    log_db[AUDIT].update_one({"_id": _id(2)}, {"$set": {k: third[k] for k in body}})
    log_db[AUDIT].update_one({"_id": _id(3)}, {"$set": {k: second[k] for k in body}})

    assert audit.verify(log_db) == Break(2, _id(2), "chain broken: reordered or previous entry changed")


def test_breaks_across_batch_boundaries_are_found(log_db, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(audit, "VERIFY_BATCH", 2)
    _append(log_db, 7)
    assert audit.verify_report(log_db) == (7, None)

    log_db[AUDIT].delete_one({"_id": _id(5)})

    assert audit.verify_report(log_db) == (4, Break(5, None, "entry 5 missing (deleted)"))


def test_the_same_event_twice_is_one_entry(log_db) -> None:  # type: ignore[no-untyped-def]
    event = _event(1)

    first = audit.append(log_db, event)
    again = audit.append(log_db, dict(event))

    assert again["seq"] == first["seq"] == 1 and again["hash"] == first["hash"]
    assert log_db[AUDIT].count_documents({}) == 1
    assert audit.verify_report(log_db) == (1, None)


def test_concurrent_appends_make_one_contiguous_chain(log_db) -> None:  # type: ignore[no-untyped-def]
    events = [_event(n, actor=f"user-{n % 8}") for n in range(40)]

    with ThreadPoolExecutor(8) as pool:
        entries = list(pool.map(lambda e: audit.append(log_db, e), events))

    assert sorted(e["seq"] for e in entries) == list(range(1, 41))
    stored = list(log_db[AUDIT].find({}).sort("seq", 1))
    assert [e["seq"] for e in stored] == list(range(1, 41))
    assert {e["event_id"] for e in stored} == {e["event_id"] for e in events}
    assert audit.verify_report(log_db) == (40, None)
    assert log_db[AUDIT_HEAD].find_one({"_id": "head"})["seq"] == 40


def test_racing_redeliveries_of_the_same_events_append_each_once(log_db) -> None:  # type: ignore[no-untyped-def]
    events = [_event(n) for n in range(10)]

    with ThreadPoolExecutor(8) as pool:
        entries = list(pool.map(lambda e: audit.append(log_db, e), events * 4))

    assert log_db[AUDIT].count_documents({}) == 10
    by_event: dict[str, set[int]] = {}
    for entry in entries:
        by_event.setdefault(entry["event_id"], set()).add(entry["seq"])
    assert all(len(seqs) == 1 for seqs in by_event.values())
    assert audit.verify_report(log_db) == (10, None)


def test_a_lagging_head_is_not_a_break_and_the_next_append_moves_it(log_db) -> None:  # type: ignore[no-untyped-def]
    entries = _append(log_db, 3)
    # As if the writer of entry 3 died between its insert and the head update.
    log_db[AUDIT_HEAD].update_one({"_id": "head"}, {"$set": {"seq": 2, "hash": entries[1]["hash"]}})

    assert audit.verify_report(log_db) == (3, None)
    audit.append(log_db, entries[2])  # the redelivered event: already there
    assert log_db[AUDIT_HEAD].find_one({"_id": "head"})["seq"] == 3


def test_a_missing_head_is_a_break(log_db) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 2)

    log_db[AUDIT_HEAD].delete_one({"_id": "head"})

    broken = audit.verify(log_db)
    assert broken is not None and broken.reason.startswith("head missing")


def test_query_filters_newest_first_and_pages(log_db) -> None:  # type: ignore[no-untyped-def]
    for n in range(1, 11):
        audit.append(log_db, _event(n, actor="alice" if n % 2 else "bob",
                                    action="order.placed" if n <= 6 else "login.failed"))
    audit.append(log_db, audit.new_event("login.failed", actor=None, detail={"email": "who@example.com"},
                                         at_ms=1_700_000_000_011))

    everything, total = audit.query(log_db)
    assert total == 11 and [e["seq"] for e in everything] == list(range(11, 0, -1))
    assert all("_id" not in e and "recorded_at" not in e for e in everything)
    assert everything[0]["actor"] is None and everything[0]["detail"] == {"email": "who@example.com"}

    alice, total = audit.query(log_db, actor="alice")
    assert total == 5 and [e["seq"] for e in alice] == [9, 7, 5, 3, 1]

    page, total = audit.query(log_db, actor="alice", limit=2, offset=2)
    assert total == 5 and [e["seq"] for e in page] == [5, 3]

    failed, total = audit.query(log_db, action="login.failed", actor="bob")
    assert total == 2 and [e["seq"] for e in failed] == [10, 8]

    window, total = audit.query(log_db, since_ms=1_700_000_000_003, until_ms=1_700_000_000_006)
    assert total == 3 and [e["at_ms"] for e in window] == [1_700_000_000_005, 1_700_000_000_004, 1_700_000_000_003]

    with pytest.raises(ValueError):
        audit.query(log_db, limit=0)


def test_the_cli_exits_0_when_intact_and_1_when_broken(log_db, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _append(log_db, 4)

    assert audit.main(["verify"], database=log_db) == 0
    assert "audit chain intact: 4 entries" in capsys.readouterr().out

    log_db[AUDIT].update_one({"_id": _id(2)}, {"$set": {"ip": "6.6.6.6"}})

    assert audit.main(["verify"], database=log_db) == 1
    assert capsys.readouterr().out.strip() == f"audit chain BROKEN at entry 2 ({_id(2)}): entry edited"


def test_the_record_task_appends_and_returns_the_seq(log_db, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from tasks import audit as audit_tasks

    monkeypatch.setattr(audit_tasks.db, "database", lambda: log_db)
    event = _event(1)

    assert audit_tasks.record(event) == "1"
    assert audit_tasks.record(event) == "1"  # a redelivered message
    assert log_db[AUDIT].count_documents({}) == 1
