"""/api/v1/products: the catalog with stock, a page at a time; store roles and admin change it.

A write stores the change with its search mark and asks for an indexer run
(coalesced); it never waits for the index (see kirana/search/dirty.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for

from api import schemas
from api.contract import documented
from api.problems import Problem
from api.responses import ProductOut, ProductPage, ProductWritten
from api.schemas import ProductsQuery, parse_query
from api.security import principal, requires
from kirana import catalog, db
from kirana.permissions import can_write_catalog
from tasks.search import request_indexing_quietly

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



@bp.get("/<product_id>")
@requires("products:read")
@documented(ok={200: ProductOut}, tags=("catalog",))
def show(product_id: str) -> Response:
    """One product, with its stock."""
    return jsonify(catalog.product_view(_found(product_id)))


@bp.post("")
@requires("catalog:write")
@documented(body=schemas.ProductIn, ok={201: ProductWritten}, errors=(409,), tags=("catalog",))
def create() -> Response:
    """Put a product on a store's shelf (store roles: their own store; admin: any)."""
    body = schemas.parse_body(request, schemas.ProductIn)
    store_id = body.store_id or principal().store_id
    if store_id is None:
        raise Problem(422, "validation-error", "Request body is invalid", "store_id is required",
                      errors=[{"field": "store_id", "message": "required for this role", "type": "missing"}])
    _may_write(store_id)
    try:
        product = catalog.create_product(db.database(), store_id, body.sku, body.model_dump(), stock=body.stock)
    except catalog.ProductExists as exc:
        raise Problem(409, "product-exists", "Product exists", f"{exc} is already on the shelf") from None
    resp = _written(product)
    resp.status_code = 201
    resp.headers["Location"] = url_for("products.show", product_id=product["_id"])
    return resp


@bp.patch("/<product_id>")
@requires("catalog:write")
@documented(body=schemas.ProductChangeIn, ok={200: ProductWritten}, tags=("catalog",))
def change(product_id: str) -> Response:
    """Change a product's name, brand, category, unit or prices."""
    _own(product_id)
    body = schemas.parse_body(request, schemas.ProductChangeIn)
    try:
        product = catalog.update_product(db.database(), product_id, body.model_dump(exclude_unset=True))
    except catalog.ProductNotFound:
        raise _not_found(product_id) from None
    return _written(product)


@bp.post("/<product_id>/stock")
@requires("catalog:write")
@documented(body=schemas.StockChangeIn, ok={200: ProductWritten}, errors=(409,), tags=("catalog",))
def adjust_stock(product_id: str) -> Response:
    """Add to (or take from) a product's stock; 409 if that would take more than is on the shelf."""
    _own(product_id)
    body = schemas.parse_body(request, schemas.StockChangeIn)
    try:
        product = catalog.adjust_stock(db.database(), product_id, body.delta)
    except catalog.ProductNotFound:
        raise _not_found(product_id) from None
    except catalog.ProductBusy as exc:
        raise Problem(409, "not-enough-stock", "Not enough stock", str(exc)) from None
    return _written(product)


@bp.delete("/<product_id>")
@requires("catalog:write")
@documented(ok={204: None}, errors=(409,), tags=("catalog",))
def delete(product_id: str) -> Response:
    """Take a product off the shelf; 409 while open orders hold its stock."""
    _own(product_id)
    try:
        catalog.delete_product(db.database(), product_id)
    except catalog.ProductNotFound:
        raise _not_found(product_id) from None
    except catalog.ProductBusy as exc:
        raise Problem(409, "product-in-use", "Product is held by open orders", str(exc)) from None
    _index_soon()
    return Response(status=204)


def _own(product_id: str) -> None:
    """404 for another store's product, as for another customer's order: its existence is not theirs to learn.

    Product ids are "<store_id>:<sku>" (kirana.stock.product_id), so no read is needed to tell.
    """
    if not can_write_catalog(principal(), product_id.split(":", 1)[0]):
        raise _not_found(product_id)


def _may_write(store_id: str) -> None:
    if not can_write_catalog(principal(), store_id):
        raise Problem(403, "forbidden", "Forbidden", f"the {principal().role} role may not change the shelf of "
                      f"{store_id}")


def _found(product_id: str) -> dict[str, object]:
    try:
        return catalog.get_product(db.database(), product_id)
    except catalog.ProductNotFound:
        raise _not_found(product_id) from None


def _not_found(product_id: str) -> Problem:
    return Problem(404, "not-found", "Not Found", f"no product {product_id}")


def _index_soon() -> str:
    # The change and its mark are stored either way; if no indexer run can be enqueued, the beat sweep runs one.
    return request_indexing_quietly()


def _written(product: dict[str, object]) -> Response:
    return jsonify(catalog.product_view(product) | {"search": _index_soon()})
