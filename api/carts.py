"""/api/v1/carts/<store_id>: the signed-in customer's cart at a store, priced at view time, and its checkout."""

from __future__ import annotations

from typing import Annotated, Literal

import pymongo.errors
from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import Field, StringConstraints

from api import responses, schemas
from api.contract import documented
from api.problems import Problem, unavailable
from api.security import principal, requires
from kirana import carts, db, orders
from kirana.config import settings
from kirana.orders import PaymentMethod
from tasks import orders as order_tasks

bp = Blueprint("carts", __name__, url_prefix="/api/v1/carts")


class QuantityIn(schemas._Body):
    qty: Annotated[int, Field(ge=0)]


class CheckoutIn(schemas._Body):
    payment_method: Literal["cod", "upi", "card", "netbanking", "token"]
    token_id: Annotated[str, StringConstraints(pattern=r"^token_[A-Za-z0-9]{1,40}$")] | None = None
    # The version the customer saw: a cart changed since (on another device) is not checked out blindly.
    version: Annotated[int, Field(ge=1)] | None = None


def _refuse(exc: carts.CartError) -> Problem:
    if isinstance(exc, carts.UnknownProduct):
        return Problem(404, "not-found", "Product not found", str(exc))
    if isinstance(exc, carts.EmptyCart):
        return Problem(409, "cart-empty", "The cart is empty", str(exc))
    return Problem(409, "cart-changed", "The cart changed", str(exc))


def _priced(cart: dict) -> Response:
    return jsonify(carts.priced(db.database(), cart))


@bp.get("/<store_id>")
@requires("cart:manage")
@documented(ok={200: responses.CartOut}, tags=("carts",))
def show(store_id: str) -> Response:
    """The signed-in customer's cart at the store (empty if none), priced now."""
    return _priced(carts.get(db.database(), principal().user_id, store_id))


@bp.put("/<store_id>/items/<sku>")
@requires("cart:manage")
@documented(body=QuantityIn, ok={200: responses.CartOut}, tags=("carts",))
def set_quantity(store_id: str, sku: str) -> Response:
    """Set how many of the sku are in the cart (0 removes it): an absolute quantity, so a replay changes nothing."""
    qty = schemas.parse_body(request, QuantityIn).qty
    if qty > settings().max_item_qty:
        raise Problem(422, "validation-error", "Request body is invalid",
                      f"at most {settings().max_item_qty} of one item")
    try:
        cart = carts.set_quantity(db.database(), principal().user_id, store_id, sku, qty)
    except carts.CartError as exc:
        raise _refuse(exc) from None
    return _priced(cart)


@bp.delete("/<store_id>/items/<sku>")
@requires("cart:manage")
@documented(ok={200: responses.CartOut}, tags=("carts",))
def remove(store_id: str, sku: str) -> Response:
    """Take the sku out of the cart."""
    return _priced(carts.remove(db.database(), principal().user_id, store_id, sku))


@bp.delete("/<store_id>")
@requires("cart:manage")
@documented(ok={200: responses.CartOut}, tags=("carts",))
def clear(store_id: str) -> Response:
    """Empty the cart."""
    return _priced(carts.clear(db.database(), principal().user_id, store_id))


@bp.post("/<store_id>/checkout")
@requires("cart:manage")
@documented(body=CheckoutIn, ok={202: responses.OrderOut}, errors=(409,), tags=("carts",))
def checkout(store_id: str) -> tuple[Response, int, dict[str, str]]:
    """Order what is in the cart (once per cart version); 409 if it is empty or changed since `version`."""
    body = schemas.parse_body(request, CheckoutIn)
    if (body.payment_method == "token") != (body.token_id is not None):
        raise Problem(422, "validation-error", "Request body is invalid",
                      "token_id is required with payment_method 'token', and only then")
    database = db.database()
    try:
        cart = carts.for_checkout(database, principal().user_id, store_id, body.version)
    except carts.CartError as exc:
        raise _refuse(exc) from None
    if cart.get("replayed_order_id"):
        order = orders.get(database, cart["replayed_order_id"])
        created = False
    else:
        try:
            order, created = order_tasks.submit(database, carts.to_order(cart, PaymentMethod(body.payment_method),
                                                                         body.token_id), carts.checkout_key(cart))
        except pymongo.errors.PyMongoError as exc:
            raise unavailable("mongodb", exc) from exc
        carts.checked_out(database, cart, order["_id"])
    headers = {"Location": url_for("orders.show", order_id=order["_id"])}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(orders.view(order, orders.events(database, order["_id"]))), 202, headers
