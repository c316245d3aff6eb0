"""/api/v1/users: role changes, by an admin."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import schemas
from api.contract import documented
from api.problems import Problem
from api.responses import UserOut
from api.security import client_address, principal, requires
from kirana import accounts, audit, db, tokens
from kirana.permissions import Role
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
