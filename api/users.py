"""/api/v1/users: role changes, by an admin."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import schemas
from api.contract import documented
from api.problems import Problem
from api.responses import EnrolmentTokenOut, UserOut
from api.security import client_address, principal, requires
from kirana import accounts, audit, db, tokens, two_factor
from kirana.config import settings
from kirana.permissions import TWO_FACTOR_REQUIRED, Role
from tasks import audit as audit_task

bp = Blueprint("users", __name__, url_prefix="/api/v1/users")


@bp.put("/<user_id>/role")
@requires("users:manage")
@documented(body=schemas.RoleIn, ok={200: UserOut}, tags=("auth",))
def set_role(user_id: str) -> Response:
    """Give a user a role (and a store for store roles); the user's sessions end."""
    body = schemas.parse_body(request, schemas.RoleIn)
    database = db.database()
    try:
        before = accounts.get(database, user_id)
        user = accounts.set_role(database, user_id, Role(body.role), body.store_id)
    except accounts.UnknownUser:
        raise Problem(404, "not-found", "Not Found", f"no user with id {user_id!r}") from None
    except accounts.InvalidRole as exc:
        raise Problem(422, "validation-error", "Request body is invalid", str(exc),
                      errors=[{"field": "store_id", "message": str(exc), "type": "missing"}]) from None
    # Tokens carry the role: end the user's sessions so the new role applies at once.
    revoked = tokens.revoke_all(database, user_id)
    audit_task.send(audit.new_event("role.changed", actor=principal().user_id, target=user_id,
                                    detail={"from": str(before.role), "to": str(user.role),
                                            "store_id": user.store_id, "sessions_revoked": revoked},
                                    ip=client_address()))
    return jsonify(user.view())


@bp.post("/<user_id>/enrolment-token")
@requires("users:manage")
@documented(ok={201: EnrolmentTokenOut}, errors=(404, 409), tags=("auth",))
def enrolment_token(user_id: str) -> tuple[Response, int]:
    """A one-time token for a privileged user to enrol two-factor; hand it over out of band."""
    database = db.database()
    try:
        user = accounts.get(database, user_id)
    except accounts.UnknownUser:
        raise Problem(404, "not-found", "Not Found", f"no user with id {user_id!r}") from None
    if user.role not in TWO_FACTOR_REQUIRED:
        raise Problem(409, "enrolment-token-not-needed", "No enrolment token needed",
                      f"the {user.role} role enrols two-factor without one")
    if two_factor.is_enabled(database, user_id):
        raise Problem(409, "two-factor-already-enabled", "Two-factor already enabled",
                      "the user has two-factor; it must be removed before a new enrolment")
    ttl_s = settings().enrolment_token_ttl_s
    token = two_factor.issue_enrolment_token(database, user_id, issued_by=principal().user_id, ttl_s=ttl_s)
    audit_task.send(audit.new_event("2fa.enrolment_token_issued", actor=principal().user_id, target=user_id,
                                    detail={"expires_in_s": ttl_s}, ip=client_address()))
    return jsonify({"enrolment_token": token, "expires_in": ttl_s}), 201
