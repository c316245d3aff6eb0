"""Stock on the shelf: reserve for an order, release, settle into a sale.

A reservation is one atomic update of the product document: it takes the
quantity from `stock` only while enough is there, and in the same update
writes a hold `holds.<order_id> = qty`. The hold makes the step idempotent
(a second reserve for the same order finds the hold and takes nothing) and
makes a release exact (it gives back what the hold says, once). No
multi-document transaction is needed, so it behaves the same on MongoDB and
the embedded server.

Every change also marks the product for the search index (in_stock and
popularity are searchable), in the same update; see kirana/search/dirty.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from kirana import db as collections
from kirana.clock import now_ms
from kirana.search.index import DIRTY_FIELD as SEARCH_DIRTY
from kirana.search.index import REV_FIELD as SEARCH_REV


def product_id(store_id: str, sku: str) -> str:
    return f"{store_id}:{sku}"


@dataclass(frozen=True)
class Reserved:
    product: dict[str, Any]
    qty: int


@dataclass(frozen=True)
class Unknown:
    sku: str


@dataclass(frozen=True)
class Short:
    sku: str
    wanted: int
    available: int


Reservation = Reserved | Unknown | Short


def reserve(db: Database, store_id: str, order_id: str, sku: str, qty: int) -> Reservation:
    products = db[collections.PRODUCTS]
    pid = product_id(store_id, sku)
    hold = f"holds.{order_id}"
    taken = products.find_one_and_update(
        {"_id": pid, "stock": {"$gte": qty}, hold: {"$exists": False}},
        {"$inc": {"stock": -qty, SEARCH_REV: 1}, "$set": {hold: qty, "updated_at_ms": now_ms()},
         "$min": {SEARCH_DIRTY: now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if taken is not None:
        return Reserved(taken, qty)
    # Not taken: already held by this order, unknown, or not enough left.
    product = products.find_one({"_id": pid})
    if product is None:
        return Unknown(sku)
    held = product.get("holds", {}).get(order_id)
    if held is not None:
        return Reserved(product, int(held))
    return Short(sku, qty, int(product.get("stock", 0)))


def release(db: Database, store_id: str, order_id: str, sku: str) -> bool:
    """Give a held quantity back to the shelf; False when nothing was held."""
    products = db[collections.PRODUCTS]
    pid = product_id(store_id, sku)
    hold = f"holds.{order_id}"
    product = products.find_one({"_id": pid, hold: {"$exists": True}}, {"holds": 1})
    if product is None:
        return False
    qty = int(product["holds"][order_id])
    released = products.update_one(
        {"_id": pid, hold: qty},
        {"$inc": {"stock": qty, SEARCH_REV: 1}, "$unset": {hold: ""}, "$set": {"updated_at_ms": now_ms()},
         "$min": {SEARCH_DIRTY: now_ms()}},
    )
    return released.modified_count == 1


def settle(db: Database, store_id: str, order_id: str, sku: str) -> bool:
    """Turn a hold into a sale: forget the hold, keep the stock taken."""
    updated = db[collections.PRODUCTS].update_one(
        {"_id": product_id(store_id, sku), f"holds.{order_id}": {"$exists": True}},
        # One more order bought it: search ranks by this ("popularity").
        {"$unset": {f"holds.{order_id}": ""}, "$inc": {"sold_orders": 1, SEARCH_REV: 1},
         "$min": {SEARCH_DIRTY: now_ms()}},
    )
    return updated.modified_count == 1


def restock(db: Database, store_id: str, order_id: str, sku: str, qty: int) -> bool:
    """Put a sold quantity back on the shelf (a cancelled or refunded order), once.

    The marker `restocked.<order_id>` makes a second restock for the same
    order find nothing to do.
    """
    marker = f"restocked.{order_id}"
    done = db[collections.PRODUCTS].update_one(
        {"_id": product_id(store_id, sku), marker: {"$exists": False}},
        {"$inc": {"stock": qty, SEARCH_REV: 1}, "$set": {marker: qty, "updated_at_ms": now_ms()},
         "$min": {SEARCH_DIRTY: now_ms()}},
    )
    return done.modified_count == 1
