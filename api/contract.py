"""The API's contract: an OpenAPI 3.1 document generated from the pydantic models the routes use.

Documenting a route is one decorator under its permission, naming the models it
already parses and answers with, and the error statuses of its own:

    @bp.post("")
    @requires("orders:create")
    @documented(body=OrderIn, headers=IdempotencyHeaders, ok={202: OrderOut}, errors=(409,))
    def submit(): ...

spectree turns the models into schemas and paths; `openapi(app)` then adds what
every route shares, so no route repeats it: the bearer scheme and 401/403 from
the route's `@requires` (none for `@public`), 400/413/415/422 when it takes a
body, 400 when it takes a query, 404 when it has a path parameter, 503 when a
dependency is down, and every error as an RFC 9457 problem (application/problem+json).

Routes keep validating with api.schemas (parse_body, parse_query): spectree
only documents (skip_validation), so a bad request still gets our problem
document, never the library's own 422 format.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel, ConfigDict
from spectree import Response, SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData

from api.security import ATTRIBUTE, PUBLIC
from kirana.permissions import MATRIX

PROBLEM_TYPE = "application/problem+json"
BEARER = "bearer"

# Routes that are not part of the JSON API, each with the reason it is left out of the spec.
EXCLUDED: dict[str, str] = {
    "live.order_updates": "a WebSocket (GET with Upgrade, answered 101) served by the gevent `ws` process; "
                          "OpenAPI 3.1 cannot describe the messages that follow",
    "live.sync_results": "a WebSocket (GET with Upgrade, answered 101) served by the gevent `ws` process, pushing "
                         "the signed-in user's offline sync results; OpenAPI 3.1 cannot describe its messages",
    "docs.asset": "static files of the interactive docs page (Swagger UI)",
}


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details; `type` is a path under /problems (docs/errors.md)."""

    # Problems carry extension members of their own (order_id, retry_after_s, checks, ...).
    model_config = ConfigDict(extra="allow", title="Problem")
    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


Ok = type[BaseModel] | str | None  # a JSON model, a media type (a body that is not JSON), or no body


@dataclass(frozen=True)
class Contract:
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    ok: Mapping[int, Ok] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    # The body may be left out altogether (every field of `body` then takes its default).
    body_optional: bool = False


CONTRACT = "kirana_contract"

SPEC = SpecTree(
    "flask",
    title="Kirana API",
    version="1",
    description="Orders, payments and deliveries for neighbourhood grocery stores. Errors are RFC 9457 "
                "problem documents (docs/errors.md). Generated from the code's pydantic models.",
    # strict: a route is in the spec only once it is @documented; tests/unit/test_contract.py
    # fails for any route that is neither documented nor in EXCLUDED.
    mode="strict",
    # Plain model names (they are unique in Kirana), nested ones shared by name.
    naming_strategy=lambda model: getattr(model, "__name__", str(model)),
    nested_naming_strategy=lambda _parent, child: child,
    annotations=False,
    validation_error_model=Problem,
    security_schemes=[SecurityScheme(name=BEARER, data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer",
                                                                        bearer_format="JWT"))],
)

View = TypeVar("View", bound=Callable[..., Any])


def documented(*, body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
               headers: type[BaseModel] | None = None, ok: Mapping[int, Ok] | None = None,
               errors: Iterable[int] = (), tags: Iterable[str] = (),
               body_optional: bool = False) -> Callable[[View], View]:
    """Put the route in the OpenAPI document (see the module docstring)."""
    contract = Contract(body=body, query=query, headers=headers, ok=dict(ok or {200: None}),
                        errors=tuple(errors), tags=tuple(tags), body_optional=body_optional)
    models = {f"HTTP_{code}": model for code, model in contract.ok.items() if isinstance(model, type)}
    models.update({f"HTTP_{code}": Problem for code in contract.errors})

    def declare(view: View) -> View:
        wrapped = SPEC.validate(json=body, query=query, headers=headers, resp=Response(**models),
                                tags=contract.tags, skip_validation=True)(view)
        # Flask registers this wrapper; @requires above marks it (wraps() copies marks made below).
        # spectree only documents here (skip_validation): api.schemas validates, with our problems.
        setattr(wrapped, CONTRACT, contract)
        return wrapped  # type: ignore[no-any-return]

    return declare


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


_SHARED_ERRORS = {
    400: "Malformed request (bad JSON, query or header)",
    401: "Missing, expired or revoked access token",
    403: "The role may not do this (or must log in with two-factor first)",
    404: "No such resource (or not yours to see)",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Body does not validate",
    503: "A dependency (MongoDB, Redis, the gateway) is unavailable; retry",
}


def _responses(contract: Contract, permission: str | None, has_path_params: bool,
               model_ref: Callable[[type[BaseModel]], str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code, model in contract.ok.items():
        description = "Success"
        if model is None:
            responses[str(code)] = {"description": description}
        elif isinstance(model, str):
            responses[str(code)] = {"description": description, "content": {model: {"schema": {"type": "string"}}}}
        else:
            responses[str(code)] = {"description": model.__doc__.strip().splitlines()[0] if model.__doc__ else
                                    description,
                                    "content": {"application/json": {"schema": {"$ref": model_ref(model)}}}}
    shared: set[int] = {503, *contract.errors}
    if permission not in (None, PUBLIC):
        shared |= {401, 403}
    if contract.body is not None:
        shared |= {400, 413, 415, 422}
    if contract.query is not None or contract.headers is not None:
        shared.add(400)
    if has_path_params:
        shared.add(404)
    for code in sorted(shared):
        responses[str(code)] = _problem(_SHARED_ERRORS.get(code, "See the problem's type in docs/errors.md"))
    return responses


def _permission_note(permission: str | None) -> str:
    if permission == PUBLIC:
        return "Public: no token."
    roles = ", ".join(str(r) for r in sorted(MATRIX.get(permission or "", ())))
    return f"Permission `{permission}` (roles: {roles or 'none'})."


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`'s documented routes."""
    # spectree lifts nested models out of SPEC.models in place (and its `spec` property caches one
    # app's routes): generate from a copy, so every app gets the whole document.
    models = copy.deepcopy(SPEC.models)
    try:
        with app.app_context():
            spec = copy.deepcopy(SPEC._generate_spec())
    finally:
        SPEC.models = models
    spec["components"]["schemas"].pop(SPEC.naming_strategy(SPEC.model_adapter.validation_error), None)

    def model_ref(model: type[BaseModel]) -> str:
        return "#/components/schemas/" + SPEC.naming_strategy(model)

    with app.app_context():
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            contract: Contract | None = getattr(view, CONTRACT, None)
            if contract is None:
                continue
            path, _ = SPEC.backend.parse_path(rule, None)
            permission = getattr(view, ATTRIBUTE, None)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                operation = spec["paths"][path][method.lower()]
                operation["operationId"] = rule.endpoint.replace(".", "_")
                operation["responses"] = _responses(contract, permission, bool(rule.arguments), model_ref)
                operation["security"] = [] if permission == PUBLIC else [{BEARER: []}]
                operation["x-permission"] = permission
                note = _permission_note(permission)
                operation["description"] = f"{operation.get('description') or ''}\n\n{note}".strip()
                for parameter in operation.get("parameters", []):
                    parameter["schema"] = _not_null(parameter["schema"])
                    if parameter["in"] == "query" and not parameter["required"]:
                        # parse_query: `?limit=` is the same as no limit (as forms send empty fields).
                        parameter["schema"] = {"anyOf": [parameter["schema"], {"const": ""}]}
                if "requestBody" in operation:
                    operation["requestBody"]["content"]["application/json"]["schema"] = {
                        "$ref": model_ref(contract.body)} if contract.body else {}
                    operation["requestBody"]["required"] = not contract.body_optional
    spec["security"] = [{BEARER: []}]
    return json.loads(json.dumps(spec))  # plain JSON types (spectree leaves enums in)


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter is absent, never null: `str | None` is documented as a string."""
    options = schema.get("anyOf")
    if options and any(o.get("type") == "null" for o in options):
        rest = [o for o in options if o.get("type") != "null"]
        schema = {k: v for k, v in schema.items() if k not in ("anyOf", "default")} | (
            rest[0] if len(rest) == 1 else {"anyOf": rest})
    return schema


def openapi(app: Flask) -> dict[str, Any]:
    """`build(app)`, once per app (routes do not change after the app is made)."""
    cached = app.extensions.get("kirana_openapi")
    if cached is None:
        cached = app.extensions["kirana_openapi"] = build(app)
    return cached
