"""/api/v1/products: the catalog with stock, a page at a time."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.schemas import query_int
from api.security import requires
from kirana import catalog, db

bp = Blueprint("products", __name__, url_prefix="/api/v1/products")


@bp.get("")
@requires("products:read")
def index() -> Response:
    limit = query_int(request, "limit", 50, minimum=1, maximum=200)
    offset = query_int(request, "offset", 0, minimum=0, maximum=10_000_000)
    category = request.args.get("category") or None
    store_id = request.args.get("store_id") or None
    items, total = catalog.list_products(db.database(), limit=limit, offset=offset, category=category,
                                        store_id=store_id)
    return jsonify({"items": items, "total": total, "limit": limit, "offset": offset})
