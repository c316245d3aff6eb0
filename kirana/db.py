"""MongoDB access: one client per process, the collections and their indexes.

Kirana keeps to a portable subset of MongoDB (see docs/mongodb-subset.md) so
that it behaves the same on MongoDB 7 and the embedded nx-27017 server.
"""

from __future__ import annotations

import os
import threading

import pymongo
from pymongo.database import Database

from kirana.config import Settings, settings

# Collection names, in one place so the migrations and tests agree.
ORDERS = "orders"
ORDER_EVENTS = "order_events"
PRODUCTS = "products"
STORES = "stores"

# (collection, keys, options) for every index the code relies on.
INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, object]]] = [
    (ORDERS, [("idempotency_key", 1)], {"unique": True, "name": "orders_idempotency_key"}),
    (ORDERS, [("status", 1), ("created_at_ms", 1)], {"name": "orders_status_created"}),
    (ORDERS, [("customer_id", 1), ("created_at_ms", -1)], {"name": "orders_customer"}),
    (ORDERS, [("store_id", 1), ("created_at_ms", -1)], {"name": "orders_store"}),
    (ORDER_EVENTS, [("order_id", 1), ("at_ms", 1)], {"name": "order_events_order"}),
    (PRODUCTS, [("store_id", 1), ("category", 1), ("sku", 1)], {"name": "products_store_category"}),
    (PRODUCTS, [("category", 1)], {"name": "products_category"}),
]

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
            )
            _clients[key] = found
        return found


def database(cfg: Settings | None = None) -> Database:
    cfg = cfg or settings()
    return client(cfg)[cfg.mongo_db]


def ensure_indexes(db: Database) -> None:
    for collection, keys, options in INDEXES:
        db[collection].create_index(keys, **options)  # type: ignore[arg-type]
