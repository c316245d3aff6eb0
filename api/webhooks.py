"""POST /webhooks/razorpay: check the signature, store the event once, enqueue, answer at once.

Events are stored by a group commit (kirana/group_commit.py): concurrent
deliveries are inserted with one `insert_many` and handed to one
`webhooks.handle_many` task, and each request answers once its own event is
stored. A failure to store answers 503, so Razorpay delivers again.
"""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from api import metrics
from api.contract import documented
from api.problems import Problem, unavailable
from api.responses import WebhookAck
from api.security import public
from kirana import db, gateway, webhooks
from kirana.config import settings
from kirana.group_commit import GroupCommit
from tasks import reliability
from tasks.webhooks import handle_many

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# Longer than a MongoDB outage takes to surface as an error (server selection).
STORE_TIMEOUT_S = 10.0


def _store_and_enqueue(docs: list[dict[str, Any]]) -> list[bool]:
    stored = webhooks.store_many(db.database(), docs)
    # Duplicates are handed on too: a delivery whose insert landed but whose reply was lost was
    # answered 503, so its redelivery is the only one that can enqueue its handling (handling
    # is idempotent: an event already handled is a no-op). With the broker down the handling
    # waits in the outbox (and the reconcile job re-enqueues events left unhandled).
    reliability.enqueue(handle_many, [[doc["_id"] for doc in docs]])
    return stored


# Under load the writer waits 2 ms to gather more events per write: each write costs
# an insert_many and a Celery publish (~0.5 ms of CPU) whatever its size. Measured
# (bench --only webhooks, 24 clients): 649 -> 791 events/s, API CPU 1.90 -> 1.57 ms
# per event; 5 ms gathered more but answered slower (711/s).
GATHER_S = 0.002
_events: GroupCommit[dict[str, Any], bool] = GroupCommit(_store_and_enqueue, max_batch=200, gather_s=GATHER_S,
                                                         name="webhook-ingest")


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
        metrics.WEBHOOK_SIGNATURE_FAILURES.labels("razorpay").inc()
        raise Problem(400, "invalid-signature", "Invalid webhook signature",
                      "X-Razorpay-Signature is missing or does not match the body")
    try:
        doc = webhooks.prepare(body, request.headers.get("X-Razorpay-Event-Id"))
    except webhooks.BadEvent as exc:
        raise Problem(400, "invalid-event", "Invalid webhook event", str(exc)) from None
    try:
        new = _events.submit(doc, timeout_s=STORE_TIMEOUT_S)
    except TimeoutError as exc:
        raise unavailable("mongodb", exc) from None  # Razorpay delivers it again
    return jsonify({"status": "accepted" if new else "duplicate", "event_id": doc["_id"]})
