"""/api/v1/sync: an offline app's queued operations, stored at once (202) and applied by the sync pool."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import pymongo.errors
from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import Field, field_validator

from api import responses, schemas
from api.contract import documented
from api.problems import Problem
from api.security import principal, requires
from kirana import db, devices, sync
from kirana.config import settings
from tasks import reliability
from tasks import sync as sync_tasks

log = logging.getLogger(__name__)

bp = Blueprint("sync", __name__, url_prefix="/api/v1/sync")


class OperationIn(schemas._Body):
    op_id: schemas.Ident
    kind: Literal["cart.set", "cart.remove", "cart.clear", "order.submit", "order.cancel", "location"]
    # The app's own counter per device; orders operations before the timestamp does.
    seq: Annotated[int, Field(ge=0)] | None = None
    # The device's clock when the operation was queued.
    client_at_ms: Annotated[int, Field(ge=0)]
    # Checked when applied: a malformed operation is rejected on its own, not the whole batch.
    data: dict[str, Any] = Field(default_factory=dict)


class BatchIn(schemas._Body):
    device_id: schemas.Ident
    # The app's id for the batch: sending it again returns the stored batch.
    batch_id: schemas.Ident | None = None
    # The device's clock when it sent the batch, to measure its skew from the server's.
    sent_at_ms: Annotated[int, Field(ge=0)] | None = None
    ops: Annotated[list[OperationIn], Field(min_length=1)]

    @field_validator("ops")
    @classmethod
    def _ops(cls, ops: list[OperationIn]) -> list[OperationIn]:
        return schemas.capped_and_unique(ops, cap=settings().sync_max_ops, key=lambda op: op.op_id,
                                         too_many="operations in one batch",
                                         repeated="each op_id may appear once in a batch")


@bp.post("")
@requires("sync:submit")
@documented(body=BatchIn, ok={202: responses.SyncBatchOut}, tags=("sync",))
def submit() -> tuple[Response, int, dict[str, str]]:
    """Send an offline app's queued operations: stored at once, applied in the device's order by the sync pool."""
    body = schemas.parse_body(request, BatchIn)
    me = principal()
    database = db.database()
    try:
        devices.get(database, me.user_id, body.device_id)
    except devices.DeviceNotFound:
        raise Problem(422, "unknown-device", "Unknown device",
                      f"register device {body.device_id!r} with POST /api/v1/devices first") from None
    batch, created = sync.store_batch(database, user_id=me.user_id, role=str(me.role), device_id=body.device_id,
                                      ops=[op.model_dump() for op in body.ops], batch_id=body.batch_id,
                                      sent_at_ms=body.sent_at_ms)
    if batch["status"] == sync.PENDING:
        try:
            # With the broker down the task waits in the outbox; the sweep is the net under both.
            reliability.enqueue(sync_tasks.apply, [batch["_id"]])
        except pymongo.errors.PyMongoError:
            log.warning("sync batch %s stored but not enqueued; the sweep will apply it", batch["_id"])
    headers = {"Location": url_for("sync.show", batch_id=sync.public_id(batch))}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(sync.view(database, batch)), 202, headers


@bp.get("/<batch_id>")
@requires("sync:submit")
@documented(ok={200: responses.SyncBatchOut}, tags=("sync",))
def show(batch_id: str) -> Response:
    """A batch sent earlier, with each operation's result so far."""
    database = db.database()
    batch = sync.get_batch(database, principal().user_id, batch_id)
    if batch is None:
        raise Problem(404, "not-found", "Sync batch not found", f"you sent no batch {batch_id!r}")
    return jsonify(sync.view(database, batch))
