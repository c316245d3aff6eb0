"""The audit entry hash and event shape, without a database."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from kirana import audit
from kirana.audit import GENESIS_HASH, InvalidEvent


def _entry(**changes: object) -> dict:
    entry = {
        "_id": "000000000007",
        "seq": 7,
        "event_id": "0f" * 16,
        "at_ms": 1_700_000_000_000,
        "action": "login.failed",
        "actor": None,
        "target": "user-9",
        "detail": {"email": "ravi@example.com", "attempt": 3, "नाम": "रवि"},
        "ip": "10.1.2.3",
        "prev_hash": "a" * 64,
    }
    entry.update(changes)
    return entry


def test_the_hash_is_sha256_over_prev_hash_and_canonical_json() -> None:
    entry = _entry()
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert audit.entry_hash(entry) == hashlib.sha256(("a" * 64 + canonical).encode()).hexdigest()
    assert "रवि" in audit.canonical_json(entry)


def test_the_hash_is_deterministic_and_ignores_key_order() -> None:
    entry = _entry()
    shuffled = dict(reversed(list(entry.items())))
    shuffled["detail"] = dict(reversed(list(entry["detail"].items())))

    assert audit.entry_hash(entry) == audit.entry_hash(dict(entry)) == audit.entry_hash(shuffled)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("_id", "000000000008"),
        ("seq", 8),
        ("event_id", "1f" * 16),
        ("at_ms", 1_700_000_000_001),
        ("action", "login.succeeded"),
        ("actor", "user-1"),
        ("target", None),
        ("detail", {"email": "ravi@example.com", "attempt": 4, "नाम": "रवि"}),
        ("ip", "10.1.2.4"),
        ("prev_hash", "b" * 64),
        ("extra", "an added field"),
    ],
)
def test_the_hash_changes_when_any_field_changes(field: str, value: object) -> None:
    assert audit.entry_hash(_entry(**{field: value})) != audit.entry_hash(_entry())


def test_the_hash_ignores_recorded_at_and_itself() -> None:
    plain = audit.entry_hash(_entry())
    stored = _entry(recorded_at=dt.datetime.now(dt.UTC), hash=plain)

    assert audit.entry_hash(stored) == plain


def test_the_first_entry_chains_from_zeros() -> None:
    assert GENESIS_HASH == "0" * 64


def test_a_new_event_is_plain_json_with_a_fresh_id() -> None:
    first = audit.new_event("login.failed", actor=None, detail={"email": "x@example.com"}, ip="1.2.3.4")
    second = audit.new_event("login.failed", actor=None)

    assert json.loads(json.dumps(first)) == first
    assert set(first) == {"event_id", "at_ms", "action", "actor", "target", "detail", "ip"}
    assert len(first["event_id"]) == 32 and first["event_id"] != second["event_id"]
    assert isinstance(first["at_ms"], int) and first["at_ms"] > 1_600_000_000_000
    assert first["actor"] is None and first["detail"] == {"email": "x@example.com"}
    assert second["detail"] == {} and second["target"] is None
    assert audit.new_event("x", actor="u", at_ms=5)["at_ms"] == 5


def test_a_new_event_detail_looks_as_it_will_after_the_broker() -> None:
    event = audit.new_event("order.placed", actor="u", detail={"skus": ("A", "B"), "n": 1.5})

    assert event["detail"] == {"skus": ["A", "B"], "n": 1.5}


@pytest.mark.parametrize(
    "detail",
    [
        {"when": dt.datetime.now(dt.UTC)},
        {"x": float("nan")},
        {"$where": 1},
        {"a.b": 1},
        {"items": [{"sku": "A"}]},
    ],
)
def test_detail_outside_the_portable_subset_is_refused(detail: dict) -> None:
    with pytest.raises(InvalidEvent):
        audit.new_event("x", actor="u", detail=detail)


@pytest.mark.parametrize(
    "broken",
    [{"action": ""}, {"event_id": None}, {"at_ms": "soon"}, {"at_ms": True}, {"actor": 7}],
)
def test_an_event_with_bad_fields_is_refused(broken: dict) -> None:
    event = {**audit.new_event("x", actor="u"), **broken}

    with pytest.raises(InvalidEvent):
        audit._validated(event)
