"""/api/v1/backups: list backup runs, and take one now (ops)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import responses
from api.contract import documented
from api.schemas import BackupsQuery, parse_query
from api.security import client_address, principal, requires
from kirana import audit, db
from kirana.backups import catalog
from tasks import audit as audit_task
from tasks import backups as backup_tasks
from tasks.reliability import enqueue

bp = Blueprint("backups", __name__, url_prefix="/api/v1/backups")


@bp.get("")
@requires("backups:manage")
@documented(query=BackupsQuery, ok={200: responses.BackupRuns}, tags=("operations",))
def index() -> Response:
    """Backup runs, newest first."""
    limit = parse_query(request, BackupsQuery).limit
    return jsonify({"items": catalog.recent(db.database(), limit=limit), "limit": limit})


@bp.post("")
@requires("backups:manage")
@documented(ok={202: responses.BackupRequested}, tags=("operations",))
def take() -> tuple[Response, int]:
    """Take a backup now (on the backups queue); audited."""
    by = principal().user_id
    how = enqueue(backup_tasks.run, [by, "on demand"])
    audit_task.send(audit.new_event("backup.requested", actor=by, detail={"enqueued": how}, ip=client_address()))
    # The run appears in the listing when the backups worker starts it.
    return jsonify({"status": how, "task": backup_tasks.run.name}), 202
