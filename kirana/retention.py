"""Bounded storage: how long each kind of finished record is kept, and the prune that enforces it.

One rule per kind of record that only grows: the collection, the guard that says the record is
finished (sent, handled, replayed, applied, ended), and the epoch-ms field its age is read from.
A prune deletes, oldest first, the records of a rule older than its setting, at most `batch` a
command with a pause between commands, so a first prune of a million rows does not starve the
orders of the server. Every rule's (guard, field) is an index in kirana.db.INDEXES.

Never pruned: the audit log (its hash chain must stay verifiable), orders, payments, the
loyalty ledger (the system of record), and records not finished (a pending outbox entry, an
unhandled webhook event, an open dead letter). `job_runs` holds one document per job: it does
not grow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from kirana import dead_letters, notifications, outbox, payments, sync, tokens, two_factor
from kirana.config import Settings

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Rule:
    name: str
    collection: str
    guard: Mapping[str, Any]
    field: str  # epoch ms: the record's age is counted from it
    setting: str  # the Settings field (retention_*_days) that says how many days the records are kept

    def keep_days(self, cfg: Settings) -> int:
        return int(getattr(cfg, self.setting))

    def index_keys(self) -> list[tuple[str, int]]:
        return [(key, 1) for key in self.guard] + [(self.field, 1)]


RULES: tuple[Rule, ...] = (
    Rule("outbox.sent", outbox.OUTBOX, {"status": "sent"}, "sent_at_ms", "retention_outbox_days"),
    # Kept well past Razorpay's 24 h of retries: a redelivery must still find its duplicate.
    Rule("webhook_events.handled", payments.WEBHOOK_EVENTS, {"status": "handled"}, "handled_at_ms",
         "retention_webhook_days"),
    Rule("webhook_events.ignored", payments.WEBHOOK_EVENTS, {"status": "ignored"}, "handled_at_ms",
         "retention_webhook_days"),
    Rule("dead_letters.replayed", dead_letters.DEAD_LETTERS, {"status": dead_letters.REPLAYED}, "replayed_at_ms",
         "retention_dead_letter_days"),
    Rule("dead_letters.discarded", dead_letters.DEAD_LETTERS, {"status": dead_letters.DISCARDED},
         "discarded_at_ms", "retention_dead_letter_days"),
    Rule("notification_attempts", notifications.ATTEMPTS, {}, "at_ms", "retention_notification_attempt_days"),
    *(Rule(f"sync_operations.{status}", sync.OPERATIONS, {"status": status}, "applied_at_ms", "retention_sync_days")
      for status in sorted(sync.FINAL)),
    Rule("sync_batches.applied", sync.BATCHES, {"status": sync.APPLIED}, "applied_at_ms", "retention_sync_days"),
    Rule("sessions.revoked", tokens.SESSIONS, {}, "revoked_at_ms", "retention_session_days"),
    Rule("sessions.expired", tokens.SESSIONS, {}, "expires_at_ms", "retention_session_days"),
    # A spent refresh token matters while its session could still be refreshed.
    Rule("refresh_tokens_spent", tokens.SPENT, {}, "expires_at_ms", "retention_session_days"),
    Rule("enrolment_tokens", two_factor.ENROLMENT_TOKENS, {}, "expires_at_ms", "retention_session_days"),
)


def prune_rule(db: Database, rule: Rule, *, now_ms: int, keep_days: int, batch: int, pause_s: float,
               max_batches: int, sleep: Callable[[float], None] = time.sleep) -> int:
    """Delete the rule's records older than `keep_days`, oldest first; how many went.

    Each command deletes up to the `batch`-th oldest record's age (records of that same age go
    with it), found through the rule's index: no `_id: {$in: …}` list, which the embedded
    server evaluates by scanning the collection.
    """
    collection = db[rule.collection]
    old = {**rule.guard, rule.field: {"$lt": now_ms - keep_days * DAY_MS}}
    deleted = 0
    for n in range(max_batches):
        if n:
            sleep(pause_s)
        edge = list(collection.find(old, {rule.field: 1}).sort(rule.field, 1).skip(batch - 1).limit(1))
        if not edge:  # fewer than a batch left: the last command
            return deleted + collection.delete_many(old).deleted_count
        deleted += collection.delete_many({**rule.guard, rule.field: {"$lte": edge[0][rule.field]}}).deleted_count
    return deleted


def prune(db: Database, cfg: Settings, *, now_ms: int, sleep: Callable[[float], None] = time.sleep,
          rules: tuple[Rule, ...] = RULES) -> dict[str, int]:
    """Every rule once, within its batch budget; records deleted by rule."""
    return {rule.name: prune_rule(db, rule, now_ms=now_ms, keep_days=rule.keep_days(cfg), batch=cfg.prune_batch,
                                  pause_s=cfg.prune_pause_s, max_batches=cfg.prune_max_batches, sleep=sleep)
            for rule in rules}
