"""Carts: one per customer and store, kept on the server so every device sees the same one.

A cart is one document, `_id` = `<customer>:<store>`, whose items are a map
by sku (`items.<sku>`, never an array: no positional updates). Each item
remembers the price and name it was added at; the priced view reads the
catalog at view time and says what changed since (price up or down, out of
stock, fewer left than wanted, gone from the catalog). Every change bumps
`version`, and a checkout's idempotency key is derived from it: checking out
the same cart twice places one order, and a cart changed in between is a new
order.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import db as collections
from kirana import stock
from kirana.clock import now_ms, utcnow
from kirana.orders import NewOrder, OrderItem, PaymentMethod

CARTS = "carts"


class CartError(Exception):
    pass


class UnknownProduct(CartError):
    def __init__(self, store_id: str, sku: str) -> None:
        super().__init__(f"store {store_id!r} sells no sku {sku!r}")
        self.sku = sku


class EmptyCart(CartError):
    def __init__(self) -> None:
        super().__init__("the cart is empty")


class CartChanged(CartError):
    def __init__(self, expected: int, found: int) -> None:
        super().__init__(f"the cart is at version {found}, not {expected}: look at it again")
        self.expected = expected
        self.found = found


def cart_id(customer_id: str, store_id: str) -> str:
    return f"{customer_id}:{store_id}"


def get(db: Database, customer_id: str, store_id: str) -> dict[str, Any]:
    """The cart, or an empty one (not stored until something is put in it)."""
    found = db[CARTS].find_one({"_id": cart_id(customer_id, store_id)})
    return found or {"_id": cart_id(customer_id, store_id), "customer_id": customer_id, "store_id": store_id,
                     "items": {}, "version": 0}


def _product(db: Database, store_id: str, sku: str) -> dict[str, Any] | None:
    return db[collections.PRODUCTS].find_one({"_id": stock.product_id(store_id, sku)})


def _change(db: Database, customer_id: str, store_id: str, update: dict[str, Any]) -> dict[str, Any]:
    at = now_ms()
    update.setdefault("$set", {})["updated_at_ms"] = at
    update["$inc"] = {"version": 1}
    # Created by an insert, not an upsert's $setOnInsert (which nx-27017 ignores in find_one_and_update).
    with contextlib.suppress(DuplicateKeyError):
        db[CARTS].insert_one({"_id": cart_id(customer_id, store_id), "customer_id": customer_id,
                              "store_id": store_id, "items": {}, "version": 0, "created_at": utcnow(),
                              "created_at_ms": at, "updated_at_ms": at})
    return db[CARTS].find_one_and_update({"_id": cart_id(customer_id, store_id)}, update,
                                         return_document=ReturnDocument.AFTER)


def set_quantity(db: Database, customer_id: str, store_id: str, sku: str, qty: int) -> dict[str, Any]:
    """Put `qty` of `sku` in the cart (0 removes it). An absolute quantity, so a replay changes nothing."""
    if qty <= 0:
        return remove(db, customer_id, store_id, sku)
    product = _product(db, store_id, sku)
    if product is None:
        raise UnknownProduct(store_id, sku)
    current = get(db, customer_id, store_id)["items"].get(sku)
    if current is not None:
        if int(current["qty"]) == qty:
            return get(db, customer_id, store_id)
        return _change(db, customer_id, store_id, {"$set": {f"items.{sku}.qty": qty}})
    item = {"qty": qty, "name": product["name"], "price_paise_at_add": int(product["price_paise"]),
            "added_at_ms": now_ms()}
    return _change(db, customer_id, store_id, {"$set": {f"items.{sku}": item}})


def remove(db: Database, customer_id: str, store_id: str, sku: str) -> dict[str, Any]:
    if sku not in get(db, customer_id, store_id)["items"]:
        return get(db, customer_id, store_id)
    return _change(db, customer_id, store_id, {"$unset": {f"items.{sku}": ""}})


def clear(db: Database, customer_id: str, store_id: str) -> dict[str, Any]:
    if not get(db, customer_id, store_id)["items"]:
        return get(db, customer_id, store_id)
    return _change(db, customer_id, store_id, {"$set": {"items": {}}})


def _changes(item: dict[str, Any], product: dict[str, Any] | None) -> list[str]:
    if product is None:
        return ["unavailable"]
    found: list[str] = []
    price, was = int(product["price_paise"]), int(item["price_paise_at_add"])
    if price > was:
        found.append("price_up")
    elif price < was:
        found.append("price_down")
    left = int(product.get("stock", 0))
    if left <= 0:
        found.append("out_of_stock")
    elif left < int(item["qty"]):
        found.append("short")
    return found


def priced(db: Database, cart: dict[str, Any]) -> dict[str, Any]:
    """The cart as the app shows it: today's prices and stock, and what changed since each item was added."""
    lines = []
    total = 0
    for sku in sorted(cart["items"]):
        item = cart["items"][sku]
        product = _product(db, cart["store_id"], sku)
        qty = int(item["qty"])
        unit = int(product["price_paise"]) if product else None
        line_total = unit * qty if unit is not None else None
        # Only what can be bought now counts towards the total.
        if product is not None and int(product.get("stock", 0)) >= qty and line_total is not None:
            total += line_total
        lines.append({
            "sku": sku, "name": product["name"] if product else item["name"], "qty": qty,
            "unit_price_paise": unit, "price_paise_at_add": int(item["price_paise_at_add"]),
            "line_total_paise": line_total, "in_stock": int(product.get("stock", 0)) if product else 0,
            "changes": _changes(item, product),
        })
    return {
        "id": cart["_id"], "store_id": cart["store_id"], "version": int(cart.get("version", 0)), "lines": lines,
        "total_paise": total, "changed": any(line["changes"] for line in lines),
        **({"last_checkout": cart["last_checkout"]} if cart.get("last_checkout") else {}),
    }


def checkout_key(cart: dict[str, Any]) -> str:
    """The order's idempotency key: one order per cart version."""
    return f"cart:{cart['store_id']}:v{int(cart['version'])}"


def to_order(cart: dict[str, Any], payment_method: PaymentMethod, token_id: str | None = None) -> NewOrder:
    if not cart["items"]:
        raise EmptyCart()
    items = tuple(OrderItem(sku, int(cart["items"][sku]["qty"])) for sku in sorted(cart["items"]))
    return NewOrder(customer_id=cart["customer_id"], store_id=cart["store_id"], items=items,
                    payment_method=payment_method, token_id=token_id)


def checked_out(db: Database, cart: dict[str, Any], order_id: str) -> None:
    """Empty the cart the order was placed from, unless it changed since (then it is a new cart)."""
    db[CARTS].update_one(
        {"_id": cart["_id"], "version": int(cart["version"])},
        {"$set": {"items": {}, "updated_at_ms": now_ms(),
                  "last_checkout": {"version": int(cart["version"]), "order_id": order_id}},
         "$inc": {"version": 1}},
    )


def for_checkout(db: Database, customer_id: str, store_id: str, version: int | None) -> dict[str, Any]:
    """The cart to check out; a retry of a checkout that already emptied it finds that checkout again."""
    cart = get(db, customer_id, store_id)
    last = cart.get("last_checkout")
    if version is not None and last and int(last["version"]) == version:
        return {**cart, "version": version, "replayed_order_id": last["order_id"]}
    if version is not None and int(cart["version"]) != version:
        raise CartChanged(version, int(cart["version"]))
    if not cart["items"]:
        raise EmptyCart()
    return cart
