"""Leaderboards (everyone) and a customer's own points (`/customers/me/loyalty`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import responses
from api.contract import documented
from api.problems import Problem
from api.schemas import BoardQuery, parse_query
from api.security import principal, requires
from kirana import db, loyalty, redis_conn
from kirana.clock import now_ms
from kirana.config import settings
from kirana.loyalty import boards

bp = Blueprint("loyalty", __name__, url_prefix="/api/v1")


def _boards() -> boards.Boards:
    return boards.Boards(redis_conn.client())


@bp.get("/leaderboards/<scope>/<scope_id>/<period>")
@requires("leaderboards:read")
@documented(query=BoardQuery, ok={200: responses.Leaderboard}, tags=("loyalty",))
def leaderboard(scope: str, scope_id: str, period: str) -> Response:
    """A leaderboard: `scope` is store or city, `period` day, week, month or all (the current bucket of it)."""
    if scope not in boards.SCOPES or period not in boards.PERIODS:
        raise Problem(404, "not-found", "Not Found",
                      f"leaderboards are per {' or '.join(boards.SCOPES)} and {', '.join(boards.PERIODS)}")
    limit = parse_query(request, BoardQuery).limit
    if not loyalty.known_scope(db.database(), scope, scope_id):
        raise Problem(404, "not-found", "Not Found", f"no {scope} {scope_id!r}")
    view = loyalty.board_view(db.database(), _boards(), scope, scope_id, period, limit=limit, now_ms=now_ms(),
                              margin_ms=settings().leaderboard_refresh_margin_s * 1000)
    # Everyone signed in reads boards: no customer's id on them, only a display name, a masked
    # member tag and whether the entry is the reader's own.
    me = principal().user_id
    view["entries"] = [{"rank": e["rank"], "name": e["name"], "member": loyalty.masked_id(e["customer_id"]),
                        "you": e["customer_id"] == me, "points": e["points"]} for e in view["entries"]]
    return jsonify(view)


@bp.get("/customers/me/loyalty")
@requires("loyalty:read")
@documented(ok={200: responses.LoyaltySummary}, tags=("loyalty",))
def mine() -> Response:
    """The signed-in customer's points balance, recent entries, achievements and ranks."""
    return jsonify(loyalty.summary(db.database(), _boards(), principal().user_id, now_ms=now_ms(),
                                   margin_ms=settings().leaderboard_refresh_margin_s * 1000))
