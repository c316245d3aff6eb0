"""/api/v1/search: product search and autocomplete; ops rebuild the index and edit synonyms."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import schemas
from api.problems import Problem
from api.schemas import query_int
from api.security import requires
from kirana import db, search
from kirana.search import synonyms
from tasks import reliability
from tasks import search as search_tasks

bp = Blueprint("search", __name__, url_prefix="/api/v1/search")

MAX_QUERY_CHARS = 200


@bp.get("")
@requires("products:read")
def results() -> Response:
    q = _query()
    sort = request.args.get("sort") or "relevance"
    if sort not in search.SORTS:
        raise _invalid("sort", f"sort must be one of {', '.join(search.SORTS)}")
    filters = search.Filters(
        store_id=request.args.get("store_id") or None,
        category=request.args.get("category") or None,
        brand=request.args.get("brand") or None,
        min_price=_optional_int("min_price"),
        max_price=_optional_int("max_price"),
        in_stock=_optional_bool("in_stock"),
    )
    page = query_int(request, "page", 1, minimum=1, maximum=1000)
    per_page = query_int(request, "per_page", 20, minimum=1, maximum=100)
    found = search.search(db.database(), q, filters, sort=sort, page=page, per_page=per_page)
    return jsonify({"query": q, "interpreted": found.interpreted, "relaxed": found.relaxed, "total": found.total,
                    "page": page, "per_page": per_page, "sort": sort, "items": found.items,
                    "facets": found.facets, "index_version": found.version})


@bp.get("/suggest")
@requires("products:read")
def suggest() -> Response:
    q = _query()
    limit = query_int(request, "limit", 10, minimum=1, maximum=25)
    return jsonify({"query": q, "suggestions": search.suggest(db.database(), q, limit=limit)})


@bp.post("/reindex")
@requires("search:manage")
def reindex() -> Response:
    how = reliability.enqueue(search_tasks.reindex, [])
    resp = jsonify({"task": "search.reindex", "status": how})
    resp.status_code = 202
    return resp


@bp.get("/status")
@requires("search:manage")
def status() -> Response:
    return jsonify(search.stats(db.database()))


@bp.get("/synonyms")
@requires("search:manage")
def synonym_groups() -> Response:
    return jsonify({"groups": synonyms.groups(db.database())})


@bp.put("/synonyms/<group>")
@requires("search:manage")
def put_synonyms(group: str) -> Response:
    body = schemas.parse_body(request, schemas.SynonymsIn)
    return jsonify(synonyms.put(db.database(), group, body.terms))


@bp.delete("/synonyms/<group>")
@requires("search:manage")
def delete_synonyms(group: str) -> Response:
    if not synonyms.delete(db.database(), group):
        raise Problem(404, "not-found", "Not Found", f"no synonym group {group}")
    return Response(status=204)


def _query() -> str:
    q = request.args.get("q", "")
    if len(q) > MAX_QUERY_CHARS:
        raise _invalid("q", f"q is at most {MAX_QUERY_CHARS} characters")
    return q


def _optional_int(name: str) -> int | None:
    if not request.args.get(name):
        return None
    return query_int(request, name, 0, minimum=0, maximum=10**12)


def _optional_bool(name: str) -> bool | None:
    raw = (request.args.get(name) or "").lower()
    if raw == "":
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise _invalid(name, f"{name} must be true or false")


def _invalid(name: str, detail: str) -> Problem:
    return Problem(400, "invalid-query", "Invalid query parameter", detail,
                   errors=[{"field": name, "message": detail, "type": "value_error"}])
