"""/api/v1/deliveries: assign a rider, pick up, deliver, and live rider location."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import Field

from api import schemas
from api.contract import documented
from api.problems import Problem
from api.responses import LocationAccepted, OrderOut
from api.security import principal, requires
from kirana import db, deliveries, orders, redis_conn
from kirana.clock import now_ms
from kirana.permissions import STORE_ROLES
from tasks import dispatch, reliability
from tasks.orders import record_location

bp = Blueprint("deliveries", __name__, url_prefix="/api/v1/deliveries")

# One location a second per rider is plenty for a map, and bounds the fan-out.
LOCATION_INTERVAL_MS = 1000


class AssignIn(schemas._Body):
    rider_id: schemas.Ident


class LocationIn(schemas._Body):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lng: Annotated[float, Field(ge=-180, le=180)]


def _refuse(exc: deliveries.DeliveryError) -> Problem:
    return Problem(409, "delivery-conflict", "Delivery step not possible", str(exc))


@bp.post("/<order_id>/assign")
@requires("deliveries:assign")
@documented(body=AssignIn, ok={200: OrderOut}, errors=(409,), tags=("deliveries",))
def assign(order_id: str) -> Response:
    """Assign a rider to a confirmed order."""
    body = schemas.parse_body(request, AssignIn)
    me = principal()
    database = db.database()
    order = orders.get(database, order_id)
    if me.role in STORE_ROLES and order["store_id"] != me.store_id:
        raise orders.OrderNotFound(order_id)
    try:
        assigned = deliveries.assign(database, order_id, body.rider_id)
    except deliveries.DeliveryError as exc:
        raise _refuse(exc) from None
    return jsonify(orders.view(assigned, orders.events(database, order_id)))


def _own_delivery(order_id: str) -> dict:
    order = orders.get(db.database(), order_id)
    if order.get("rider_id") != principal().user_id:
        raise orders.OrderNotFound(order_id)
    return order


@bp.post("/<order_id>/pickup")
@requires("deliveries:ride")
@documented(ok={200: OrderOut}, errors=(409,), tags=("deliveries",))
def pickup(order_id: str) -> Response:
    """The rider picked the order up: out for delivery."""
    return _ride(order_id, deliveries.pick_up)


@bp.post("/<order_id>/delivered")
@requires("deliveries:ride")
@documented(ok={200: OrderOut}, errors=(409,), tags=("deliveries",))
def delivered(order_id: str) -> Response:
    """The rider handed the order over."""
    return _ride(order_id, deliveries.hand_over)


def _ride(order_id: str, step: Callable[..., dict[str, Any]]) -> Response:
    """One step of the rider's own delivery; the customer's notification was recorded with the move."""
    _own_delivery(order_id)
    try:
        moved = step(db.database(), order_id, principal().user_id)
    except deliveries.DeliveryError as exc:
        raise _refuse(exc) from None
    dispatch.send_quietly(moved)
    return jsonify(orders.view(moved, orders.history(moved)))


@bp.post("/<order_id>/location")
@requires("deliveries:ride")
@documented(body=LocationIn, ok={202: LocationAccepted}, errors=(409, 429), tags=("deliveries",))
def location(order_id: str) -> tuple[Response, int]:
    """The rider's live location (at most one a second)."""
    body = schemas.parse_body(request, LocationIn)
    order = _own_delivery(order_id)
    if order["status"] != orders.Status.OUT_FOR_DELIVERY:
        raise Problem(409, "delivery-conflict", "Not out for delivery", "share the location once picked up")
    rider = principal().user_id
    r = redis_conn.client()
    if not r.set(f"kirana:rl:location:{rider}", "1", nx=True, px=LOCATION_INTERVAL_MS):
        problem = Problem(429, "too-many-locations", "Too many locations", "one location a second is enough")
        problem.headers = {"Retry-After": "1"}
        raise problem
    at = now_ms()
    # Published at once for the live map; the trail is stored in the background.
    r.publish(f"kirana:order:{order_id}", json.dumps({"type": "location", "order_id": order_id, "lat": body.lat,
                                                      "lng": body.lng, "at_ms": at}))
    reliability.enqueue(record_location, [order_id, rider, body.lat, body.lng, at])
    return jsonify({"order_id": order_id, "at_ms": at}), 202
