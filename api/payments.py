"""/api/v1/payments and /api/v1/payment-methods: checkout results and saved cards."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request

from api import schemas
from api.contract import documented
from api.problems import Problem, unavailable
from api.responses import SavedMethods, VerifiedOut
from api.security import principal, requires
from kirana import db, gateway, payments
from kirana.config import settings
from tasks import reliability
from tasks.payments import capture

bp = Blueprint("payments", __name__, url_prefix="/api/v1")


@bp.post("/payments/verify")
@requires("payments:pay")
@documented(body=schemas.CheckoutIn, ok={202: VerifiedOut}, errors=(404,), tags=("payments",))
def verify() -> tuple[Response, int]:
    """Report what Razorpay Checkout handed the app (signature checked); the capture follows."""
    body = schemas.parse_body(request, schemas.CheckoutIn)
    if not gateway.checkout_signature_valid(settings().razorpay_key_secret, body.razorpay_order_id,
                                            body.razorpay_payment_id, body.razorpay_signature):
        raise Problem(400, "invalid-signature", "Invalid checkout signature",
                      "razorpay_signature does not match this order and payment")
    database = db.database()
    attempt = payments.by_gateway_order(database, body.razorpay_order_id)
    if attempt is None or attempt["customer_id"] != principal().user_id:
        raise Problem(404, "not-found", "Not Found", "no payment of yours for this Razorpay order")
    payments.record_checkout(database, body.razorpay_order_id, body.razorpay_payment_id, attempt)
    # The webhook would trigger the capture too; whichever comes first captures, once.
    reliability.enqueue(capture, [attempt["_id"]])
    return jsonify({"order_id": attempt["order_id"], "payment_id": attempt["_id"], "status": "verified"}), 202


def _customer_id() -> str | None:
    user = db.database()["users"].find_one({"_id": principal().user_id}, {"razorpay_customer_id": 1})
    return (user or {}).get("razorpay_customer_id")


@bp.get("/payment-methods")
@requires("payments:pay")
@documented(ok={200: SavedMethods}, tags=("payments",))
def methods() -> Response:
    """The customer's saved cards."""
    customer = _customer_id()
    if customer is None:
        return jsonify({"items": []})
    try:
        tokens = gateway.Razorpay().saved_tokens(customer)
    except gateway.GatewayUnavailable as exc:
        raise unavailable("razorpay", exc) from None
    items = [{"id": t["id"], "method": t.get("method"), "card": t.get("card"), "created_at": t.get("created_at")}
             for t in tokens]
    return jsonify({"items": items})


_TOKEN_ID = re.compile(r"token_[A-Za-z0-9]{1,40}")


@bp.delete("/payment-methods/<token_id>")
@requires("payments:pay")
@documented(ok={204: None}, tags=("payments",))
def forget(token_id: str) -> tuple[str, int]:
    """Forget a saved card."""
    if not _TOKEN_ID.fullmatch(token_id):
        # Checked before it becomes part of the gateway's URL ("../", "?", "%2F" ...).
        raise Problem(404, "not-found", "Not Found", f"no saved payment method {token_id!r}")
    customer = _customer_id()
    if customer is None:
        raise Problem(404, "not-found", "Not Found", f"no saved payment method {token_id!r}")
    try:
        gateway.Razorpay().delete_token(customer, token_id)
    except gateway.GatewayRefused:
        raise Problem(404, "not-found", "Not Found", f"no saved payment method {token_id!r}") from None
    except gateway.GatewayUnavailable as exc:
        raise unavailable("razorpay", exc) from None
    return "", 204
