"""Webhook events stored in one round trip: new ones once, duplicates (stored before or in the same batch) not."""

from __future__ import annotations

import json

import pytest

from kirana import webhooks


def _body(n: int) -> bytes:
    return json.dumps({"event": "payment.captured", "payload": {"payment": {"entity": {"id": f"pay_{n}"}}}}).encode()


def test_store_many_reports_which_events_were_new(database) -> None:  # type: ignore[no-untyped-def]
    assert webhooks.store(database, _body(1), "evt_1") == ("evt_1", True)
    docs = [webhooks.prepare(_body(n), f"evt_{n}") for n in (2, 1, 3, 2)]
    assert webhooks.store_many(database, docs) == [True, False, True, False]
    stored = sorted(d["_id"] for d in database[webhooks.EVENTS].find({}, {"_id": 1}))
    assert stored == ["evt_1", "evt_2", "evt_3"]
    assert webhooks.store_many(database, []) == []


def test_an_event_without_an_id_is_named_by_its_body_and_bad_bodies_are_refused() -> None:
    doc = webhooks.prepare(_body(7), None)
    assert doc["_id"].startswith("sha256:") and doc["status"] == "received"
    for bad in (b"not json", b"[1, 2]", b'{"no": "event"}', b"\xff\xfe"):
        with pytest.raises(webhooks.BadEvent):
            webhooks.prepare(bad, "evt_bad")


def test_a_batch_read_at_once_is_handled_like_one_by_one(database) -> None:  # type: ignore[no-untyped-def]
    # handle_many reads its batch with one query (stored_events) and hands each event in.
    for n in (1, 2, 3):
        webhooks.store(database, _body(n), f"evt_{n}")
    ignored = json.dumps({"event": "settlement.processed"}).encode()
    webhooks.store(database, ignored, "evt_ignored")
    first = webhooks.handle(database, "evt_2")
    assert first.outcome == "unknown_payment"  # no such payment: handled, nothing to apply

    batch = ["evt_1", "evt_2", "evt_gone", "evt_3", "evt_ignored"]
    stored = webhooks.stored_events(database, batch)
    assert sorted(stored) == ["evt_1", "evt_2", "evt_3", "evt_ignored"]
    outcomes = [webhooks.handle(database, event_id, stored=stored.get(event_id)).outcome for event_id in batch]
    assert outcomes == ["unknown_payment", "already_handled", "missing", "unknown_payment", "ignored"]
    statuses = {d["_id"]: (d["status"], d.get("outcome")) for d in database[webhooks.EVENTS].find({})}
    assert statuses == {"evt_1": ("handled", "unknown_payment"), "evt_2": ("handled", "unknown_payment"),
                        "evt_3": ("handled", "unknown_payment"), "evt_ignored": ("ignored", "ignored")}


def test_the_same_signed_body_under_a_new_event_id_is_a_duplicate(database) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 10: the event-id header is not signed; what the body says is."""
    captured = json.dumps({"event": "payment.captured", "payload": {"payment": {"entity": {
        "id": "pay_x", "status": "captured"}}}}).encode()
    failed = json.dumps({"event": "payment.failed", "payload": {"payment": {"entity": {
        "id": "pay_x", "status": "failed"}}}}).encode()

    assert webhooks.store(database, captured, "evt_a") == ("evt_a", True)
    assert webhooks.store(database, captured, "evt_b") == ("evt_b", False)  # re-posted under a new id
    docs = [webhooks.prepare(b, i) for b, i in ((captured, "evt_c"), (failed, "evt_d"), (failed, "evt_e"))]
    assert webhooks.store_many(database, docs) == [False, True, False]
    assert sorted(d["_id"] for d in database[webhooks.EVENTS].find({}, {"_id": 1})) == ["evt_a", "evt_d"]


def test_a_body_naming_no_entity_is_keyed_by_its_own_bytes() -> None:
    one = webhooks.prepare(b'{"event": "account.updated", "payload": {}}', "evt_1")
    two = webhooks.prepare(b'{"event": "account.updated", "payload": {"x": 1}}', "evt_2")
    assert one["dedupe_key"].startswith("account.updated:sha256:") and one["dedupe_key"] != two["dedupe_key"]
