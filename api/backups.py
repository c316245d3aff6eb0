"""/api/v1/backups: list backup runs, and take one now (ops)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.schemas import query_int
from api.security import client_address, principal, requires
from kirana import audit, db
from kirana.backups import catalog
from tasks import audit as audit_task
from tasks import backups as backup_tasks
from tasks.reliability import enqueue

bp = Blueprint("backups", __name__, url_prefix="/api/v1/backups")


@bp.get("")
@requires("backups:manage")
def index() -> Response:
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    return jsonify({"items": catalog.recent(db.database(), limit=limit), "limit": limit})


@bp.post("")
@requires("backups:manage")
def take() -> tuple[Response, int]:
    by = principal().user_id
    how = enqueue(backup_tasks.run, [by, "on demand"])
    audit_task.send(audit.new_event("backup.requested", actor=by, detail={"enqueued": how}, ip=client_address()))
    # The run appears in the listing when the backups worker starts it.
    return jsonify({"status": how, "task": backup_tasks.run.name}), 202
