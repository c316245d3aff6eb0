"""The sandbox's own routes (no auth): the customer's side of Checkout, and the test knobs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from sandbox.errors import ApiError
from sandbox.web import bank, body

checkout = Blueprint("checkout", __name__, url_prefix="/_sandbox/checkout/<order_id>")
sandbox = Blueprint("sandbox", __name__, url_prefix="/_sandbox")


@checkout.post("/authorize")
def authorize(order_id: str) -> Any:
    return bank().authorize(order_id, body())


@checkout.post("/fail")
def fail(order_id: str) -> Any:
    return bank().fail(order_id, body())


@checkout.post("/upi")
def upi(order_id: str) -> Any:
    return bank().upi(order_id, body())


@sandbox.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@sandbox.get("/control")
def knobs() -> Any:
    return bank().knobs()


@sandbox.post("/control")
def set_knobs() -> Any:
    return bank().control(body())


@sandbox.post("/reset")
def reset() -> Any:
    return bank().reset()


@sandbox.post("/webhooks/flush")
def flush() -> Any:
    order = body().get("order", "fifo")
    if order not in ("fifo", "reverse"):
        raise ApiError("order must be fifo or reverse", field="order")
    flushed = bank().webhooks.flush(order)
    return {"flushed": flushed, "count": len(flushed)}


@sandbox.get("/stats")
def stats() -> Any:
    return bank().stats()


@sandbox.get("/events")
def events() -> Any:
    items = bank().webhooks.events(name=request.args.get("event"), entity_id=request.args.get("id"))
    return {"entity": "collection", "count": len(items), "items": items}
