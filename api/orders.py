"""/api/v1/orders: submit an order (answered 202, completed by the orders pool) and read it."""

from __future__ import annotations

import pymongo.errors
from flask import Blueprint, Response, jsonify, request, url_for

from api import schemas
from api.contract import documented
from api.problems import Problem, unavailable
from api.responses import OrderOut
from api.security import client_address, principal, requires
from kirana import db, orders, payments
from kirana.config import settings
from kirana.permissions import can_see_order
from tasks import dispatch
from tasks import orders as order_tasks

bp = Blueprint("orders", __name__, url_prefix="/api/v1/orders")


@bp.post("")
@requires("orders:create")
@documented(body=schemas.OrderIn, headers=schemas.IdempotencyHeaders, ok={202: OrderOut}, errors=(409,),
            tags=("orders",))
def submit() -> Response:
    """Submit an order: answered 202 at once, completed by the orders pool.

    Send an Idempotency-Key: a retry with the same key and body answers with the same order
    (and `Idempotent-Replayed: true`); the same key with another body is a 409.
    """
    new = schemas.parse_order(request, principal().user_id)
    key = schemas.idempotency_key(request)
    database = db.database()
    try:
        order, created = order_tasks.submit(database, new, key)
    except pymongo.errors.PyMongoError as exc:
        raise unavailable("mongodb", exc) from exc
    resp = jsonify(orders.view(order, orders.history(order)))
    resp.status_code = 202
    resp.headers["Location"] = url_for("orders.show", order_id=order["_id"])
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.get("/<order_id>")
@requires("orders:read")
@documented(ok={200: OrderOut}, tags=("orders",))
def show(order_id: str) -> Response:
    """An order with its events (404 for an order that is not yours to see)."""
    order, order_events = orders.with_events(db.database(), order_id)
    if not can_see_order(principal(), order):
        # 404, not 403: whether someone else's order exists is not for this user to learn.
        raise orders.OrderNotFound(order_id)
    return jsonify(orders.view(order, order_events))


@bp.post("/<order_id>/cancel")
@requires("orders:cancel")
@documented(ok={202: OrderOut}, errors=(409,), tags=("orders",))
def cancel(order_id: str) -> tuple[Response, int]:
    """Cancel an order (a paid one is refunded on the payments queue)."""
    database = db.database()
    me = principal()
    order = orders.get(database, order_id)
    if not can_see_order(me, order):
        raise orders.OrderNotFound(order_id)
    try:
        order_tasks.cancel(database, order_id, actor=me.user_id, ip=client_address())
    except payments.CannotCancel as exc:
        raise Problem(409, "cannot-cancel", "The order cannot be cancelled now", str(exc)) from None
    return jsonify(orders.view(*orders.with_events(database, order_id))), 202


@bp.post("/<order_id>/retry-payment")
@requires("payments:pay")
@documented(ok={202: OrderOut}, errors=(409,), tags=("payments",))
def retry_payment(order_id: str) -> tuple[Response, int]:
    """Open a new payment attempt for an order whose payment failed."""
    database = db.database()
    order = orders.get(database, order_id)
    if order["customer_id"] != principal().user_id:
        raise orders.OrderNotFound(order_id)
    attempt = payments.retry(database, order_id, pay_within_ms=settings().payment_expiry_s * 1000)
    if attempt is None:
        raise Problem(409, "cannot-retry-payment", "No payment to retry",
                      f"only an order whose payment failed can be paid again; this one is {order['status']}")
    dispatch.send_for(database, order_id)  # the new attempt's gateway order, recorded with the move
    return jsonify(orders.view(*orders.with_events(database, order_id))), 202
