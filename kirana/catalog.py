"""The catalog as shoppers browse it: products of a store, with stock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import db as collections
from kirana.clock import now_ms, utcnow
from kirana.search import dirty
from kirana.stock import product_id as make_product_id

_SHOWN = {"holds": 0}


def _shown(doc: dict[str, Any]) -> dict[str, Any]:
    """A product as a write returned it, without the orders' holds. Dropped here, not by a
    projection: FerretDB 1.24 refuses a projection in findAndModify (docs/mongodb-subset.md)."""
    doc.pop("holds", None)
    return doc


def product_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "store_id": doc["store_id"],
        "sku": doc["sku"],
        "name": doc["name"],
        "brand": doc.get("brand"),
        "category": doc.get("category"),
        "unit": doc.get("unit"),
        "price_paise": doc["price_paise"],
        "mrp_paise": doc.get("mrp_paise"),
        "stock": doc["stock"],
        "in_stock": doc["stock"] > 0,
    }


def list_products(
    db: Database, *, limit: int, offset: int, category: str | None = None, store_id: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of products in a stable order, and how many match in all."""
    query: dict[str, Any] = {}
    if category is not None:
        query["category"] = category
    if store_id is not None:
        query["store_id"] = store_id
    products = db[collections.PRODUCTS]
    found = products.find(query, _SHOWN).sort("_id", 1).skip(offset).limit(limit)
    return [product_view(p) for p in found], products.count_documents(query)


# --- writes (store roles for their own store, admin for all; see api/products.py) --------------
#
# Every write marks the product for the search index in the same update that changes it
# (kirana.search.dirty.mark), so a stored change can never be missing its mark.

EDITABLE = ("name", "brand", "category", "unit", "price_paise", "mrp_paise")


class ProductNotFound(LookupError):
    pass


class ProductExists(ValueError):
    pass


class ProductBusy(ValueError):
    """The change would break an order in flight (stock held for it, or stock below zero)."""


def get_product(db: Database, product_id: str) -> dict[str, Any]:
    found = db[collections.PRODUCTS].find_one({"_id": product_id}, _SHOWN)
    if found is None:
        raise ProductNotFound(product_id)
    return found


def create_product(db: Database, store_id: str, sku: str, fields: dict[str, Any], *, stock: int) -> dict[str, Any]:
    now = now_ms()
    doc = {"_id": make_product_id(store_id, sku), "store_id": store_id, "sku": sku,
           **{k: fields.get(k) for k in EDITABLE}, "stock": stock, "created_at": utcnow(), "updated_at_ms": now,
           dirty.DIRTY_FIELD: now, dirty.REV_FIELD: 1}
    try:
        db[collections.PRODUCTS].insert_one(doc)
    except DuplicateKeyError:
        raise ProductExists(doc["_id"]) from None
    return doc


def update_product(db: Database, product_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change descriptive fields or the price; returns the product as stored."""

    now = now_ms()
    update = dirty.mark(now)
    update["$set"] = {**{k: v for k, v in changes.items() if k in EDITABLE}, "updated_at_ms": now}
    found = db[collections.PRODUCTS].find_one_and_update({"_id": product_id}, update,
                                                        return_document=ReturnDocument.AFTER)
    if found is None:
        raise ProductNotFound(product_id)
    return _shown(found)


def adjust_stock(db: Database, product_id: str, delta: int) -> dict[str, Any]:
    """Add (a delivery) or take away (a count, breakage) stock, never below zero; atomic beside orders' holds."""

    now = now_ms()
    update = dirty.mark(now)
    update["$inc"]["stock"] = delta
    update["$set"] = {"updated_at_ms": now}
    guard: dict[str, Any] = {"_id": product_id}
    if delta < 0:
        guard["stock"] = {"$gte": -delta}
    found = db[collections.PRODUCTS].find_one_and_update(guard, update, return_document=ReturnDocument.AFTER)
    if found is None:
        product = get_product(db, product_id)
        raise ProductBusy(f"only {product['stock']} in stock; cannot take {-delta}")
    return _shown(found)


def delete_product(db: Database, product_id: str) -> None:
    """Take a product off the shelf; refused while an order holds some of its stock."""

    product = db[collections.PRODUCTS].find_one({"_id": product_id}, {"holds": 1})
    if product is None:
        raise ProductNotFound(product_id)
    if product.get("holds"):
        raise ProductBusy(f"{len(product['holds'])} order(s) hold stock of {product_id}")
    # Tombstone first: a crash between the two leaves a tombstone the indexer drops, never a ghost in the index.
    dirty.bury(db, product_id)
    db[collections.PRODUCTS].delete_one({"_id": product_id})


def line_categories(db: Database, orders: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Category of each line's product, by product id ("<store>:<sku>"), for many orders at once.

    A line priced since the sale's category was kept (kirana.fulfilment.price_line) answers
    from the order; only older lines cost a read, one for all of them.
    """
    found: dict[str, str] = {}
    missing: set[str] = set()
    for order in orders:
        for line in order.get("lines", []):
            pid = make_product_id(order["store_id"], line["sku"])
            if "category" in line:
                found[pid] = str(line["category"])
            else:
                missing.add(pid)
    missing -= found.keys()
    if missing:
        for product in db[collections.PRODUCTS].find({"_id": {"$in": sorted(missing)}}, {"category": 1}):
            found[product["_id"]] = str(product.get("category") or "")
    return found
