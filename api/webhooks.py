"""POST /webhooks/razorpay: check the signature, store the event once, enqueue, answer at once."""

from __future__ import annotations

import contextlib

import kombu.exceptions
import redis.exceptions
from flask import Blueprint, Response, jsonify, request

from api.problems import Problem
from api.security import public
from kirana import db, gateway, webhooks
from kirana.config import settings
from tasks.webhooks import handle

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/razorpay")
@public  # authenticated by its signature instead of a token
def razorpay() -> Response:
    body = request.get_data(cache=False)
    signature = request.headers.get("X-Razorpay-Signature", "")
    cfg = settings()
    if not signature or not gateway.webhook_signature_valid(
        (cfg.razorpay_webhook_secret, cfg.razorpay_webhook_secret_previous), body, signature
    ):
        raise Problem(400, "invalid-signature", "Invalid webhook signature",
                      "X-Razorpay-Signature is missing or does not match the body")
    try:
        event_id, new = webhooks.store(db.database(), body, request.headers.get("X-Razorpay-Event-Id"))
    except webhooks.BadEvent as exc:
        raise Problem(400, "invalid-event", "Invalid webhook event", str(exc)) from None
    if new:
        # If the broker is down the event is stored already, and the reconcile
        # job enqueues events left unhandled: acknowledge it either way.
        with contextlib.suppress(kombu.exceptions.OperationalError, redis.exceptions.RedisError):
            handle.delay(event_id)
    return jsonify({"status": "accepted" if new else "duplicate", "event_id": event_id})
