"""/api/v1/audit: the audit log, newest first, for ops and admins."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.schemas import query_int
from api.security import requires
from kirana import audit, db

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")

_FAR = 10**15  # epoch ms far in the future


@bp.get("")
@requires("audit:read")
def index() -> Response:
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    offset = query_int(request, "offset", 0, minimum=0, maximum=10_000_000)
    since = query_int(request, "since", 0, minimum=0, maximum=_FAR) or None
    until = query_int(request, "until", 0, minimum=0, maximum=_FAR) or None
    items, total = audit.query(db.database(), actor=request.args.get("actor") or None,
                               action=request.args.get("action") or None, since_ms=since, until_ms=until,
                               limit=limit, offset=offset)
    return jsonify({"items": items, "total": total, "limit": limit, "offset": offset})
