"""/api/v1/search: product search and autocomplete; ops rebuild the index and edit synonyms."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import responses, schemas
from api.contract import documented
from api.problems import Problem
from api.security import requires
from kirana import db, search
from kirana.search import synonyms
from tasks import reliability
from tasks import search as search_tasks

bp = Blueprint("search", __name__, url_prefix="/api/v1/search")


@bp.get("")
@requires("products:read")
@documented(query=schemas.SearchQuery, ok={200: responses.SearchResults}, errors=(422,), tags=("search",))
def results() -> Response:
    """Search the catalog: ranked, filtered and faceted; typos, partial words and synonyms match."""
    q = schemas.parse_query(request, schemas.SearchQuery)
    if not q.q.strip() and not q.store_id:
        # Without words every product is a candidate: one store's catalogue is a browse; the
        # whole index (every store's) read per request is not.
        message = "give q (what to search for) or store_id (to browse one store)"
        raise Problem(422, "validation-error", "Query is incomplete", message,
                      errors=[{"field": "q", "message": message, "type": "missing"}])
    filters = search.Filters(store_id=q.store_id, category=q.category, brand=q.brand, min_price=q.min_price,
                             max_price=q.max_price, in_stock=q.in_stock)
    found = search.search(db.database(), q.q, filters, sort=q.sort, page=q.page, per_page=q.per_page)
    return jsonify({"query": q.q, "interpreted": found.interpreted, "relaxed": found.relaxed, "total": found.total,
                    "page": q.page, "per_page": q.per_page, "sort": q.sort, "items": found.items,
                    "facets": found.facets, "index_version": found.version})


@bp.get("/suggest")
@requires("products:read")
@documented(query=schemas.SuggestQuery, ok={200: responses.Suggestions}, tags=("search",))
def suggest() -> Response:
    """Autocomplete: product lines, brands and categories starting with what was typed."""
    q = schemas.parse_query(request, schemas.SuggestQuery)
    return jsonify({"query": q.q, "suggestions": search.suggest(db.database(), q.q, limit=q.limit)})


@bp.post("/reindex")
@requires("search:manage")
@documented(ok={202: responses.Enqueued}, tags=("search",))
def reindex() -> Response:
    """Rebuild the index beside the live one; it flips in when complete (searches never see a partial one)."""
    how = reliability.enqueue(search_tasks.reindex, [])
    resp = jsonify({"task": "search.reindex", "status": how})
    resp.status_code = 202
    return resp


@bp.get("/status")
@requires("search:manage")
@documented(ok={200: responses.SearchStatus}, tags=("search",))
def status() -> Response:
    """The live index version, its size and age, any build in progress, and the indexing lag."""
    return jsonify(search.stats(db.database()))


@bp.get("/synonyms")
@requires("search:manage")
@documented(ok={200: responses.SynonymGroups}, tags=("search",))
def synonym_groups() -> Response:
    """The synonym groups ("aloo", "alu", "potato")."""
    return jsonify({"groups": synonyms.groups(db.database())})


@bp.put("/synonyms/<group>")
@requires("search:manage")
@documented(body=schemas.SynonymsIn, ok={200: responses.SynonymGroup}, tags=("search",))
def put_synonyms(group: str) -> Response:
    """Create or replace a synonym group (searches use it within 30 s; no reindex needed)."""
    body = schemas.parse_body(request, schemas.SynonymsIn)
    return jsonify(synonyms.put(db.database(), group, body.terms))


@bp.delete("/synonyms/<group>")
@requires("search:manage")
@documented(ok={204: None}, tags=("search",))
def delete_synonyms(group: str) -> Response:
    """Delete a synonym group."""
    if not synonyms.delete(db.database(), group):
        raise Problem(404, "not-found", "Not Found", f"no synonym group {group}")
    return Response(status=204)
