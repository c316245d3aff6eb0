"""/api/v1/products: the catalog with stock, a page at a time."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.contract import documented
from api.responses import ProductPage
from api.schemas import ProductsQuery, parse_query
from api.security import requires
from kirana import catalog, db

bp = Blueprint("products", __name__, url_prefix="/api/v1/products")


@bp.get("")
@requires("products:read")
@documented(query=ProductsQuery, ok={200: ProductPage}, tags=("catalog",))
def index() -> Response:
    """The catalog with stock, a page at a time."""
    q = parse_query(request, ProductsQuery)
    items, total = catalog.list_products(db.database(), limit=q.limit, offset=q.offset, category=q.category,
                                        store_id=q.store_id)
    return jsonify({"items": items, "total": total, "limit": q.limit, "offset": q.offset})
