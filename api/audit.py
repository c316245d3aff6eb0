"""/api/v1/audit: the audit log, newest first, for ops and admins."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.contract import documented
from api.responses import AuditPage
from api.schemas import AuditQuery, parse_query
from api.security import requires
from kirana import audit, db

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")

@bp.get("")
@requires("audit:read")
@documented(query=AuditQuery, ok={200: AuditPage}, tags=("operations",))
def index() -> Response:
    """The audit log, newest first."""
    q = parse_query(request, AuditQuery)
    items, total = audit.query(db.database(), actor=q.actor, action=q.action, since_ms=q.since or None,
                               until_ms=q.until or None, limit=q.limit, offset=q.offset)
    return jsonify({"items": items, "total": total, "limit": q.limit, "offset": q.offset})
