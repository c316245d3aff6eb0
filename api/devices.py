"""/api/v1/devices: the signed-in user's devices and their push tokens."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import StringConstraints

from api import responses, schemas
from api.contract import documented
from api.problems import Problem
from api.security import principal, requires
from kirana import db, devices

bp = Blueprint("devices", __name__, url_prefix="/api/v1/devices")

# FCM and APNs tokens are printable ASCII. A control character (NUL) is refused here: nx-27017's unique
# index on the token does not see it as the query does, so registering such a token failed with a 500.
PushToken = Annotated[str, StringConstraints(min_length=8, max_length=4096, pattern=r"^[!-~]+$")]


class DeviceIn(schemas._Body):
    platform: Literal["android", "ios", "web"]
    push_token: PushToken
    app_version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    # A token refresh: the token this one replaces (the device keeps its id).
    replaces_token: PushToken | None = None


@bp.post("")
@requires("devices:manage")
@documented(body=DeviceIn, ok={201: responses.DeviceOut}, tags=("devices",))
def register() -> tuple[Response, int]:
    """Register the app on this device with its push token (again with `replaces_token` when the token changes)."""
    body = schemas.parse_body(request, DeviceIn)
    device = devices.register(db.database(), principal().user_id, platform=devices.Platform(body.platform),
                              token=body.push_token, app_version=body.app_version, replaces=body.replaces_token)
    return jsonify(devices.view(device)), 201


@bp.get("")
@requires("devices:manage")
@documented(ok={200: responses.Devices}, tags=("devices",))
def mine() -> Response:
    """The signed-in user's devices."""
    return jsonify({"items": devices.views(devices.mine(db.database(), principal().user_id))})


@bp.delete("/<device_id>")
@requires("devices:manage")
@documented(ok={204: None}, tags=("devices",))
def remove(device_id: str) -> tuple[str, int]:
    """Forget a device (no more pushes to it)."""
    if not devices.remove(db.database(), principal().user_id, device_id):
        raise Problem(404, "not-found", "Device not found", f"you have no device with id {device_id!r}")
    return "", 204
