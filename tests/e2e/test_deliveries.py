"""Delivery tracking: assign a rider, pick up, share location, deliver; the customer hears each step."""

from __future__ import annotations

import time

import pytest

from kirana import deliveries
from kirana.permissions import Role
from kirana.seed import STORES

pytestmark = pytest.mark.e2e

STORE_A, STORE_B = STORES[0]["_id"], STORES[1]["_id"]


def _confirmed_order(stack, customer) -> str:  # type: ignore[no-untyped-def]
    product = stack.db["products"].find_one({"store_id": STORE_A, "stock": {"$gte": 5}})
    order_id = customer.submit({"store_id": STORE_A, "payment_method": "cod",
                                "items": [{"sku": product["sku"], "qty": 1}]}).json()["id"]
    assert customer.wait_terminal(order_id)["status"] == "confirmed"
    return order_id


def test_a_rider_takes_an_order_from_the_store_to_the_door(stack, customer) -> None:  # type: ignore[no-untyped-def]
    staff = stack.user(Role.STORE_STAFF, store_id=STORE_A)
    other_staff = stack.user(Role.STORE_STAFF, store_id=STORE_B)
    rider, other_rider = stack.user(Role.RIDER), stack.user(Role.RIDER)
    order_id = _confirmed_order(stack, customer)

    foreign = other_staff.http.post(other_staff.url(f"/api/v1/deliveries/{order_id}/assign"),
                                    json={"rider_id": rider.user_id}, timeout=10)
    assigned = staff.http.post(staff.url(f"/api/v1/deliveries/{order_id}/assign"),
                               json={"rider_id": rider.user_id}, timeout=10)
    stolen = other_rider.http.post(other_rider.url(f"/api/v1/deliveries/{order_id}/pickup"), timeout=10)
    picked = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/pickup"), timeout=10)
    first = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/location"), json={"lat": 12.97, "lng": 77.64},
                            timeout=10)
    too_soon = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/location"),
                               json={"lat": 12.98, "lng": 77.65}, timeout=10)
    time.sleep(1.1)
    second = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/location"),
                             json={"lat": 12.99, "lng": 77.66}, timeout=10)
    done = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/delivered"), timeout=10)

    assert foreign.status_code == 404 and assigned.status_code == 200
    assert stolen.status_code == 404
    assert picked.status_code == 200 and picked.json()["status"] == "out_for_delivery"
    assert (first.status_code, too_soon.status_code, second.status_code) == (202, 429, 202)
    assert done.status_code == 200 and done.json()["status"] == "delivered"
    order = customer.order(order_id)
    assert [e["status"] for e in order["events"]][-3:] == ["confirmed", "out_for_delivery", "delivered"]
    assert rider.http.get(rider.url(f"/api/v1/orders/{order_id}"), timeout=10).status_code == 200
    deadline = time.monotonic() + 10
    while len(deliveries.trail(stack.db, order_id)) < 2:
        assert time.monotonic() < deadline, "the trail was not stored"
        time.sleep(0.1)
    assert [(p["lat"], p["lng"]) for p in deliveries.trail(stack.db, order_id)] == [(12.97, 77.64), (12.99, 77.66)]
    deadline = time.monotonic() + 20
    wanted = {"order_out_for_delivery", "order_delivered"}
    while not wanted <= {n["event"] for n in customer.http.get(customer.url("/api/v1/notifications"),
                                                                timeout=10).json()["items"]}:
        assert time.monotonic() < deadline, "the customer did not hear of the delivery"
        time.sleep(0.2)


def test_a_rider_cannot_deliver_what_was_never_picked_up(stack, customer) -> None:  # type: ignore[no-untyped-def]
    staff = stack.user(Role.STORE_STAFF, store_id=STORE_A)
    rider = stack.user(Role.RIDER)
    order_id = _confirmed_order(stack, customer)
    staff.http.post(staff.url(f"/api/v1/deliveries/{order_id}/assign"), json={"rider_id": rider.user_id}, timeout=10)

    early = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/delivered"), timeout=10)
    location = rider.http.post(rider.url(f"/api/v1/deliveries/{order_id}/location"), json={"lat": 1, "lng": 2},
                               timeout=10)
    not_a_rider = staff.http.post(staff.url(f"/api/v1/deliveries/{order_id}/assign"),
                                  json={"rider_id": customer.user_id}, timeout=10)

    assert early.status_code == 409 and location.status_code == 409 and not_a_rider.status_code == 409
