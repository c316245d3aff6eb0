"""/api/v1/orders: submit an order (answered 202, completed by the orders pool) and read it."""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
from flask import Blueprint, Response, jsonify, request, url_for

from api import schemas
from api.problems import unavailable
from api.security import principal, requires
from kirana import db, orders
from kirana.permissions import can_see_order
from tasks.base import publish_order_update
from tasks.orders import process

bp = Blueprint("orders", __name__, url_prefix="/api/v1/orders")

_BROKER_DOWN = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@bp.post("")
@requires("orders:create")
def submit() -> Response:
    new = schemas.parse_order(request, principal().user_id)
    key = schemas.idempotency_key(request)
    database = db.database()
    order, created = orders.place(database, new, idempotency_key=key, publish=publish_order_update)
    if created:
        try:
            process.apply_async(args=[order["_id"]])
        except _BROKER_DOWN as exc:
            # Undo the write so the client's retry starts clean.
            orders.withdraw(database, order["_id"])
            raise unavailable("redis", exc) from exc
    resp = jsonify(orders.view(order, orders.events(database, order["_id"])))
    resp.status_code = 202
    resp.headers["Location"] = url_for("orders.show", order_id=order["_id"])
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.get("/<order_id>")
@requires("orders:read")
def show(order_id: str) -> Response:
    database = db.database()
    order = orders.get(database, order_id)
    if not can_see_order(principal(), order):
        # 404, not 403: whether someone else's order exists is not for this user to learn.
        raise orders.OrderNotFound(order_id)
    return jsonify(orders.view(order, orders.events(database, order_id)))
