"""Every route declares its permission; requests are checked before the view runs.

    @bp.get("/<order_id>")
    @requires("orders:read")
    def show(order_id): ...

A route with no declaration is refused (default deny); `@public` marks the
few that need no token (health, register, login, refresh).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from api.problems import Problem
from kirana import db, tokens
from kirana.config import settings
from kirana.permissions import MATRIX, Principal, allowed, needs_two_factor

PUBLIC = "public"
ATTRIBUTE = "kirana_permission"

View = TypeVar("View", bound=Callable[..., Any])


def requires(permission: str) -> Callable[[View], View]:
    if permission not in MATRIX:
        raise ValueError(f"{permission!r} is not in the permission matrix")

    def declare(view: View) -> View:
        setattr(view, ATTRIBUTE, permission)
        return view

    return declare


def public(view: View) -> View:
    setattr(view, ATTRIBUTE, PUBLIC)
    return view


def declared_permission(endpoint: str) -> str | None:
    view = current_app.view_functions.get(endpoint)
    return getattr(view, ATTRIBUTE, None)


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, "unauthorized", "Unauthorized", detail)
    problem.headers = {"WWW-Authenticate": 'Bearer realm="kirana"'}
    return problem


def bearer_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send an access token as 'Authorization: Bearer <token>'")
    try:
        return tokens.authenticate(db.database(), token.strip(), secret=settings().token_secret)
    except tokens.TokenError as exc:
        raise _unauthorized(str(exc)) from None


def enforce() -> None:
    """before_request: authenticate and authorize against the route's declaration."""
    if request.endpoint is None:  # no such route or method: let routing answer 404/405
        return
    if request.method == "OPTIONS":
        # A CORS preflight carries no credentials; Flask's automatic answer holds no data, and
        # flask-cors adds the allow headers only for CORS_ALLOWED_ORIGINS.
        return
    permission = declared_permission(request.endpoint)
    if permission is None:
        raise Problem(403, "forbidden", "Forbidden", "this route declares no permission, so nobody may use it")
    if permission == PUBLIC:
        return
    principal = bearer_principal()
    if not allowed(principal, permission):
        if needs_two_factor(principal) and principal.role in MATRIX.get(permission, ()):
            raise Problem(403, "two-factor-required", "Two-factor authentication required",
                          f"the {principal.role} role must enrol in two-factor and log in with a code first")
        raise Problem(403, "forbidden", "Forbidden", f"the {principal.role} role may not {permission}")
    g.principal = principal


def principal() -> Principal:
    return g.principal


def client_address() -> str:
    return request.remote_addr or "unknown"
