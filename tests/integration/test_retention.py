"""Bounded storage (kirana.retention) against the real MongoDB wire protocol: per rule, finished
records past their retention go, recent ones and unfinished ones stay; batches are paced."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from kirana import db as collections
from kirana import payments, retention, webhooks
from kirana.config import settings

NOW = 1_800_000_000_000
DAY = retention.DAY_MS


def _cfg(**overrides: Any):  # type: ignore[no-untyped-def]
    return dataclasses.replace(settings(), prune_pause_s=0.0, **overrides)


def _unfinished(rule: retention.Rule) -> dict[str, Any] | None:
    """A record of the rule's collection old enough, but not finished (its guard fails), if the rule has a guard."""
    if not rule.guard:
        return None
    return {"status": "pending-or-open"}


@pytest.mark.parametrize("rule", retention.RULES, ids=lambda r: r.name)
def test_old_finished_records_go_and_recent_or_unfinished_ones_stay(database, rule: retention.Rule) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg()
    keep = rule.keep_days(cfg)
    docs = [
        {"_id": "old", **rule.guard, rule.field: NOW - (keep + 1) * DAY},
        {"_id": "older", **rule.guard, rule.field: NOW - (keep + 300) * DAY},
        {"_id": "recent", **rule.guard, rule.field: NOW - (keep - 1) * DAY},
    ]
    unfinished = _unfinished(rule)
    if unfinished is not None:
        docs.append({"_id": "unfinished", **unfinished, rule.field: NOW - (keep + 5) * DAY})
    database[rule.collection].insert_many(docs)

    deleted = retention.prune(database, cfg, now_ms=NOW, rules=(rule,))

    assert deleted == {rule.name: 2}
    left = sorted(d["_id"] for d in database[rule.collection].find({}, {"_id": 1}))
    assert left == sorted(["recent"] + (["unfinished"] if unfinished is not None else []))


def test_a_large_prune_goes_in_paced_batches_of_the_setting_and_stops_at_its_budget(database) -> None:  # type: ignore[no-untyped-def]
    rule = next(r for r in retention.RULES if r.name == "notification_attempts")
    database[rule.collection].insert_many([{"at_ms": NOW - 100 * DAY - i} for i in range(2_500)])
    pauses: list[float] = []

    first = retention.prune_rule(database, rule, now_ms=NOW, keep_days=90, batch=1_000, pause_s=0.5,
                                 max_batches=2, sleep=pauses.append)

    assert first == 2_000 and pauses == [0.5]
    assert database[rule.collection].count_documents({}) == 500
    # The oldest went first: what is left is the newest of the old.
    assert database[rule.collection].find_one(sort=[("at_ms", 1)])["at_ms"] == NOW - 100 * DAY - 499
    assert retention.prune_rule(database, rule, now_ms=NOW, keep_days=90, batch=1_000, pause_s=0.5,
                                max_batches=2, sleep=pauses.append) == 500


def test_a_webhook_redelivered_within_its_retention_is_still_a_duplicate_and_after_it_is_new(database) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"event": "payment.failed", "payload": {"payment": {"entity": {
        "id": "pay_R1", "order_id": "order_R1", "status": "failed"}}}}).encode()
    doc = webhooks.prepare(body, "evt_R1")
    database[payments.WEBHOOK_EVENTS].insert_one({**doc, "status": "handled", "handled_at_ms": NOW - 2 * DAY})

    retention.prune(database, _cfg(), now_ms=NOW)
    assert webhooks.store_many(database, [webhooks.prepare(body, "evt_R1")]) == [False]  # a duplicate

    retention.prune(database, _cfg(), now_ms=NOW + 40 * DAY)  # past RETENTION_WEBHOOK_DAYS (30)
    assert database[payments.WEBHOOK_EVENTS].count_documents({}) == 0


def test_the_audit_log_and_orders_are_never_pruned() -> None:
    pruned = {rule.collection for rule in retention.RULES}
    assert "audit_log" not in pruned and collections.ORDERS not in pruned and "payments" not in pruned
