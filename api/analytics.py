"""/api/v1/stores/<store_id>/analytics: a store's sales read model, for its owner and staff (and ops)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, jsonify, request

from api.problems import Problem
from api.schemas import query_int
from api.security import principal, requires
from kirana import analytics, db
from kirana.config import settings
from kirana.permissions import can_see_store

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/stores")

DEFAULT_DAYS = 30
MAX_DAYS = 366


def _day(name: str, default: dt.date) -> dt.date:
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise Problem(400, "invalid-query", "Invalid query parameter", f"{name} must be a date, YYYY-MM-DD",
                      errors=[{"field": name, "message": "expected YYYY-MM-DD", "type": "date"}]) from None


@bp.get("/<store_id>/analytics")
@requires("analytics:read")
def show(store_id: str) -> Response:
    if not can_see_store(principal(), store_id):
        # 404, not 403, as for orders: another store's existence is not this user's to learn.
        raise Problem(404, "not-found", "Store not found", f"no store {store_id!r} of yours")
    today = dt.datetime.now(ZoneInfo(settings().analytics_timezone)).date()
    last = _day("to", today)
    first = _day("from", last - dt.timedelta(days=DEFAULT_DAYS - 1))
    if first > last or (last - first).days >= MAX_DAYS:
        raise Problem(400, "invalid-query", "Invalid query parameter",
                      f"from must not be after to, and the range at most {MAX_DAYS} days")
    top = query_int(request, "top", analytics.TOP, minimum=1, maximum=100)
    return jsonify(analytics.report(db.database(), store_id, first.isoformat(), last.isoformat(), top=top))
