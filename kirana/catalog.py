"""The catalog as shoppers browse it: products of a store, with stock."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from kirana import db as collections

_SHOWN = {"holds": 0}


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
