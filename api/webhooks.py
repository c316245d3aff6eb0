"""POST /webhooks/razorpay: check the signature, store the event once, enqueue, answer at once."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from api.contract import documented
from api.problems import Problem
from api.responses import WebhookAck
from api.security import public
from kirana import db, gateway, webhooks
from kirana.config import settings
from tasks import reliability
from tasks.webhooks import handle

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


class RazorpayEvent(BaseModel):
    """A Razorpay webhook event; the raw body is what the signature covers (kirana.webhooks reads it)."""

    model_config = ConfigDict(extra="allow")
    event: str
    payload: dict[str, Any] | None = None
    created_at: int | None = None


class SignatureHeaders(BaseModel):
    signature: Annotated[str, Field(alias="X-Razorpay-Signature",
                                    description="hex HMAC-SHA256 of the raw body with the webhook secret")]
    event_id: Annotated[str | None, Field(alias="X-Razorpay-Event-Id",
                                          description="Razorpay's id of the event (deduplicates)")] = None


@bp.post("/razorpay")
@public  # authenticated by its signature instead of a token
@documented(body=RazorpayEvent, headers=SignatureHeaders, ok={200: WebhookAck}, tags=("payments",))
def razorpay() -> Response:
    """Razorpay webhooks: the signature is checked, the event stored once and handled on the webhooks queue."""
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
        # With the broker down the handling waits in the outbox (and the reconcile
        # job re-enqueues events left unhandled): acknowledge either way.
        reliability.enqueue(handle, [event_id])
    return jsonify({"status": "accepted" if new else "duplicate", "event_id": event_id})
