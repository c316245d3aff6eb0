"""/api/v1/stores/<store_id>/analytics: a store's sales read model, for its owner and staff (and ops)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, jsonify, request

from api import responses
from api.contract import documented
from api.problems import Problem
from api.schemas import AnalyticsQuery, parse_query
from api.security import principal, requires
from kirana import analytics, db
from kirana.config import settings
from kirana.permissions import can_see_store

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/stores")

DEFAULT_DAYS = 30
MAX_DAYS = 366


@bp.get("/<store_id>/analytics")
@requires("analytics:read")
@documented(query=AnalyticsQuery, ok={200: responses.StoreAnalytics}, tags=("analytics",))
def show(store_id: str) -> Response:
    """A store's sales, orders, top products and categories, hours, payment methods and repeat customers."""
    if not can_see_store(principal(), store_id):
        # 404, not 403, as for orders: another store's existence is not this user's to learn.
        raise Problem(404, "not-found", "Store not found", f"no store {store_id!r} of yours")
    q = parse_query(request, AnalyticsQuery)
    last = q.to or dt.datetime.now(ZoneInfo(settings().analytics_timezone)).date()
    # The default start stops at the calendar's first day (to=0001-01-05 must not overflow into a 500).
    first = q.from_ or last - dt.timedelta(days=min(DEFAULT_DAYS - 1, last.toordinal() - 1))
    if first > last or (last - first).days >= MAX_DAYS:
        raise Problem(400, "invalid-query", "Invalid query parameter",
                      f"from must not be after to, and the range at most {MAX_DAYS} days")
    return jsonify(analytics.report(db.database(), store_id, first.isoformat(), last.isoformat(), top=q.top))
