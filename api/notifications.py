"""/api/v1/notifications: the user's inbox (with delivery logs) and preferences."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import StringConstraints

from api import schemas
from api.contract import documented
from api.problems import Problem
from api.responses import NotificationPage, PreferencesOut
from api.schemas import PageQuery, parse_query
from api.security import principal, requires
from kirana import db, notifications

bp = Blueprint("notifications", __name__, url_prefix="/api/v1/notifications")

HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class ChannelsIn(schemas._Body):
    sms: bool = False
    email: bool = True
    push: bool = True
    in_app: bool = True


class PreferencesIn(schemas._Body):
    channels: ChannelsIn = ChannelsIn()
    language: Literal["en", "hi"] = "en"
    quiet_start: HHMM | None = None
    quiet_end: HHMM | None = None
    timezone: Literal["Asia/Kolkata", "UTC"] = "Asia/Kolkata"
    push_token: Annotated[str, StringConstraints(min_length=8, max_length=4096)] | None = None


@bp.get("")
@requires("notifications:read")
@documented(query=PageQuery, ok={200: NotificationPage}, tags=("notifications",))
def inbox() -> Response:
    """The user's notifications, newest first, each with its delivery log."""
    q = parse_query(request, PageQuery)
    items, total = notifications.inbox(db.database(), principal().user_id, limit=q.limit, offset=q.offset)
    return jsonify({"items": items, "total": total, "limit": q.limit, "offset": q.offset})


@bp.post("/<notification_id>/read")
@requires("notifications:read")
@documented(ok={204: None}, tags=("notifications",))
def read(notification_id: str) -> tuple[str, int]:
    """Mark a notification read."""
    if not notifications.mark_read(db.database(), principal().user_id, notification_id):
        raise Problem(404, "not-found", "Not Found", f"no notification {notification_id!r} of yours")
    return "", 204


@bp.get("/preferences")
@requires("notifications:read")
@documented(ok={200: PreferencesOut}, tags=("notifications",))
def get_preferences() -> Response:
    """Notification preferences."""
    return jsonify(asdict(notifications.get_preferences(db.database(), principal().user_id)))


@bp.put("/preferences")
@requires("notifications:read")
@documented(body=PreferencesIn, ok={200: PreferencesOut}, tags=("notifications",))
def put_preferences() -> Response:
    """Replace the notification preferences."""
    body = schemas.parse_body(request, PreferencesIn)
    if (body.quiet_start is None) != (body.quiet_end is None):
        raise Problem(422, "validation-error", "Request body is invalid", "give both quiet_start and quiet_end",
                      errors=[{"field": "quiet_end", "message": "both or neither", "type": "missing"}])
    prefs = notifications.Preferences(channels=body.channels.model_dump(), language=body.language,
                                      quiet_start=body.quiet_start, quiet_end=body.quiet_end,
                                      timezone=body.timezone, push_token=body.push_token)
    return jsonify(asdict(notifications.set_preferences(db.database(), principal().user_id, prefs)))
