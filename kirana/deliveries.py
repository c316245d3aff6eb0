"""Deliveries: a rider is assigned to a confirmed order, picks it up, delivers it, and is tracked."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from kirana import db as collections
from kirana import orders
from kirana.clock import now_ms, utcnow
from kirana.orders import Status

LOCATIONS = "delivery_locations"


class DeliveryError(Exception):
    pass


def assign(db: Database, order_id: str, rider_id: str) -> dict[str, Any]:
    rider = db["users"].find_one({"_id": rider_id}, {"role": 1})
    if rider is None or rider.get("role") != "rider":
        raise DeliveryError(f"{rider_id!r} is not a rider")
    assigned = db[collections.ORDERS].find_one_and_update(
        {"_id": order_id, "status": str(Status.CONFIRMED)},
        {"$set": {"rider_id": rider_id, "updated_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if assigned is None:
        raise DeliveryError("only a confirmed order that has not left the store can be assigned")
    return assigned


def pick_up(db: Database, order_id: str, rider_id: str) -> dict[str, Any]:
    return _advance(db, order_id, rider_id, Status.CONFIRMED, Status.OUT_FOR_DELIVERY,
                    refusal="the order is not confirmed, or not assigned to you")


def hand_over(db: Database, order_id: str, rider_id: str) -> dict[str, Any]:
    return _advance(db, order_id, rider_id, Status.OUT_FOR_DELIVERY, Status.DELIVERED,
                    refusal="the order is not out for delivery with you")


def _advance(db: Database, order_id: str, rider_id: str, expected: Status, to: Status, *,
             refusal: str) -> dict[str, Any]:
    """Move the order on, only if it is where the rider's step starts and assigned to this rider."""
    moved = orders.move(db, order_id, expected, to, guard={"rider_id": rider_id}, detail={"rider_id": rider_id})
    if moved is None:
        raise DeliveryError(refusal)
    return moved


def record_location(db: Database, order_id: str, rider_id: str, *, lat: float, lng: float, at_ms: int) -> None:
    """The trail, insert-only; the same point twice is stored once."""
    db[LOCATIONS].update_one(
        {"_id": f"{order_id}:{rider_id}:{at_ms}"},
        {"$setOnInsert": {"order_id": order_id, "rider_id": rider_id, "lat": lat, "lng": lng, "at_ms": at_ms,
                          "created_at": utcnow()}},
        upsert=True,
    )


def trail(db: Database, order_id: str) -> list[dict[str, Any]]:
    found = db[LOCATIONS].find({"order_id": order_id}, {"_id": 0, "lat": 1, "lng": 1, "at_ms": 1})
    return sorted(found, key=lambda p: p["at_ms"])
