"""MongoDB access: one client per process, the collections and their indexes.

Kirana keeps to a portable subset of MongoDB (see docs/mongodb-subset.md) so
that it behaves the same on MongoDB 7 and the embedded nx-27017 server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pymongo
from pymongo.collection import Collection
from pymongo.database import Database

from kirana import command_counts
from kirana.config import Settings, settings

# Collection names, in one place so the migrations and tests agree.
ORDERS = "orders"
# Before v10 an order's events were their own collection; now they are the order's `history`,
# and this is the archive the v10 migration read (nothing writes it).
ORDER_EVENTS = "order_events"
PRODUCTS = "products"
STORES = "stores"
LOYALTY_LEDGER = "loyalty_ledger"
LOYALTY_ACCOUNTS = "loyalty_accounts"
ACHIEVEMENTS = "achievements"

# (collection, keys, options) for every index the code relies on. All keys are
# ascending and unnamed: the embedded server ignores index names and
# directions (tests/integration/test_mongo_compat.py), and an ascending
# compound index serves a descending sort after an equality match anyway.
INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, object]]] = [
    (ORDERS, [("idempotency_key", 1)], {"unique": True}),
    (ORDERS, [("status", 1), ("created_at_ms", 1)], {}),
    # The dispatch sweep finds orders with follow-ups left unsent by their time (tasks/dispatch.py).
    (ORDERS, [("intents_at_ms", 1)], {}),
    (ORDERS, [("customer_id", 1), ("created_at_ms", 1)], {}),
    (ORDERS, [("store_id", 1), ("created_at_ms", 1)], {}),
    # A single-field index too: nx-27017 does not use a compound index for a
    # query on its first field alone, and read every event per GET without it.
    (ORDER_EVENTS, [("order_id", 1)], {}),
    (PRODUCTS, [("store_id", 1), ("category", 1), ("sku", 1)], {}),
    (PRODUCTS, [("category", 1)], {}),
    ("users", [("email", 1)], {"unique": True}),
    ("sessions", [("refresh_hash", 1)], {}),
    ("sessions", [("previous_hash", 1)], {}),
    ("sessions", [("user_id", 1)], {}),
    ("notifications", [("user_id", 1), ("created_at_ms", 1)], {}),
    ("recovery_codes", [("user_id", 1)], {}),
    # Audit log (kirana.audit): event_id makes an append idempotent; seq orders the chain.
    ("audit_log", [("event_id", 1)], {"unique": True}),
    ("audit_log", [("seq", 1)], {"unique": True}),
    ("audit_log", [("actor", 1), ("seq", 1)], {}),
    ("audit_log", [("action", 1), ("seq", 1)], {}),
    ("audit_log", [("at_ms", 1)], {}),
    # Payments (kirana.payments, kirana.webhooks).
    (ORDERS, [("status", 1), ("pay_by_ms", 1)], {}),
    ("payments", [("razorpay_order_id", 1)], {}),
    ("payments", [("razorpay_payment_id", 1)], {}),
    ("payments", [("status", 1), ("created_at_ms", 1)], {}),
    ("webhook_events", [("status", 1), ("received_at_ms", 1)], {}),
    # What the signed body says (event, entity, status): a body re-posted under a new event id is a duplicate.
    ("webhook_events", [("dedupe_key", 1)], {"unique": True}),
    # Reliability (kirana.outbox, kirana.dead_letters).
    ("outbox", [("status", 1), ("due_at_ms", 1)], {}),
    ("outbox", [("order_id", 1)], {}),
    ("dead_letters", [("status", 1), ("last_failed_at_ms", 1)], {}),
    ("dead_letters", [("task", 1), ("last_failed_at_ms", 1)], {}),
    ("dead_letters", [("order_id", 1)], {}),
    # Notifications and deliveries.
    ("notification_attempts", [("notification_id", 1)], {}),
    ("delivery_locations", [("order_id", 1), ("at_ms", 1)], {}),
    # Backups catalog (kirana.backups.catalog): the last success/failure for /metrics.
    ("backups", [("status", 1), ("finished_at_ms", 1)], {}),
    # Mobile backend (kirana.devices, carts, sync, analytics).
    ("devices", [("token", 1)], {"unique": True}),
    ("devices", [("user_id", 1)], {}),
    ("sync_operations", [("device_id", 1), ("status", 1)], {}),
    ("sync_batches", [("status", 1), ("received_at_ms", 1)], {}),
    ("sync_batches", [("device_id", 1), ("status", 1)], {}),
    # Per user and device (a device that changes hands starts a stream of its own; kirana/sync.py).
    ("sync_operations", [("user_id", 1), ("device_id", 1), ("status", 1)], {}),
    ("sync_batches", [("user_id", 1), ("device_id", 1), ("status", 1)], {}),
    ("store_analytics", [("kind", 1), ("store_id", 1), ("day", 1)], {}),
    # The analytics scan and the loyalty sweep read orders by when they last changed.
    (ORDERS, [("updated_at_ms", 1)], {}),
    # Search (kirana.search.dirty): the oldest product change, and deletion, not yet indexed.
    (PRODUCTS, [("search_dirty_ms", 1)], {}),
    ("search_tombstones", [("changed_at_ms", 1)], {}),
    # Loyalty (kirana.loyalty): a customer's recent entries, an order's entries, one board's rebuild.
    (LOYALTY_LEDGER, [("customer_id", 1), ("created_at_ms", 1)], {}),
    (LOYALTY_LEDGER, [("order_id", 1)], {}),
    (LOYALTY_LEDGER, [("store_id", 1), ("at_ms", 1)], {}),
    (LOYALTY_LEDGER, [("city", 1), ("at_ms", 1)], {}),
    (ACHIEVEMENTS, [("customer_id", 1)], {}),
    # Bounded storage (kirana.retention): each prune rule's guard and age field, oldest first.
    ("outbox", [("status", 1), ("sent_at_ms", 1)], {}),
    ("webhook_events", [("status", 1), ("handled_at_ms", 1)], {}),
    ("dead_letters", [("status", 1), ("replayed_at_ms", 1)], {}),
    ("dead_letters", [("status", 1), ("discarded_at_ms", 1)], {}),
    ("notification_attempts", [("at_ms", 1)], {}),
    ("sync_operations", [("status", 1), ("applied_at_ms", 1)], {}),
    ("sync_batches", [("status", 1), ("applied_at_ms", 1)], {}),
    ("sessions", [("revoked_at_ms", 1)], {}),
    ("sessions", [("expires_at_ms", 1)], {}),
    ("refresh_tokens_spent", [("expires_at_ms", 1)], {}),
    ("enrolment_tokens", [("expires_at_ms", 1)], {}),
]


# Update statements per `update` command. FerretDB 1.24 (SQLite) keeps each statement's cursor
# open until the whole command ends, and every write takes one more connection, from a pool of
# 100 per database shared by all clients: a bulk of 100 updates deadlocks that database on its
# own (docs/mongodb-subset.md). Small commands leave the pool to concurrent clients.
MAX_UPDATES_PER_COMMAND = 25


@dataclass(frozen=True)
class BulkUpdated:
    matched: int = 0
    modified: int = 0
    upserted: int = 0


def bulk_update(collection: Collection, ops: Sequence[pymongo.UpdateOne]) -> BulkUpdated:
    """Unordered bulk updates, sent at most MAX_UPDATES_PER_COMMAND to a command; the counts summed."""
    matched = modified = upserted = 0
    for start in range(0, len(ops), MAX_UPDATES_PER_COMMAND):
        result = collection.bulk_write(list(ops[start:start + MAX_UPDATES_PER_COMMAND]), ordered=False)
        matched += result.matched_count
        modified += result.modified_count
        upserted += result.upserted_count
    return BulkUpdated(matched, modified, upserted)


def index_keys(db: Database, collection: str) -> dict[tuple[tuple[str, int], ...], bool]:
    """The indexes a collection has, by key (names differ between servers) -> unique."""
    return {
        tuple((field, int(direction)) for field, direction in spec["key"]): bool(spec.get("unique", False))
        for spec in db[collection].index_information().values()
    }


_lock = threading.Lock()
_clients: dict[tuple[int, str, int], pymongo.MongoClient] = {}


def client(cfg: Settings | None = None) -> pymongo.MongoClient:
    """The process's client for `cfg.mongo_url`.

    Keyed by pid because a pymongo client must not cross a fork: a prefork
    worker child builds its own on first use.
    """
    cfg = cfg or settings()
    key = (os.getpid(), cfg.mongo_url, cfg.mongo_timeout_ms)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = pymongo.MongoClient(
                cfg.mongo_url,
                serverSelectionTimeoutMS=cfg.mongo_timeout_ms,
                connectTimeoutMS=cfg.mongo_timeout_ms,
                # Writes are acknowledged before a task is enqueued on them.
                w=1,
                tz_aware=True,
                event_listeners=command_counts.listeners(cfg.mongo_command_counts, cfg.data_dir),
            )
            _clients[key] = found
        return found


def database(cfg: Settings | None = None) -> Database:
    cfg = cfg or settings()
    return client(cfg)[cfg.mongo_db]


def ensure_indexes(db: Database) -> None:
    for collection, keys, options in INDEXES:
        db[collection].create_index(keys, **options)  # type: ignore[arg-type]
