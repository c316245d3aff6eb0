"""One error format for every 4xx and 5xx: RFC 9457 problem details.

    {"type": "/problems/validation-error", "title": "Request body is invalid",
     "status": 422, "detail": "...", "errors": [{"field": "items.0.qty", ...}]}

`type` is a path under /problems; docs/errors.md describes each one.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.exceptions
import pymongo.errors
import redis.exceptions
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from kirana.orders import IdempotencyConflict, OrderNotFound

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}

    def response(self) -> Response:
        body: dict[str, Any] = {"type": f"/problems/{self.slug}", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        resp = jsonify(body)
        resp.status_code = self.status
        resp.mimetype = CONTENT_TYPE
        resp.headers.update(self.headers)
        return resp


def unavailable(dependency: str, exc: BaseException) -> Problem:
    # Not "nothing was stored": a write whose reply was lost may have landed. A retry with
    # the same Idempotency-Key is always safe, and an order that did land is processed.
    return Problem(
        503, "service-unavailable", "A service Kirana depends on is unavailable",
        f"{dependency} did not answer ({type(exc).__name__}); try again (with the same Idempotency-Key)",
        dependency=dependency,
    )


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-").replace("'", "")


def register(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        name = exc.name or "Error"
        problem = Problem(status, _slug(name), name, exc.description)
        resp = problem.response()
        if status == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                resp.headers["Allow"] = ", ".join(allowed)
        return resp

    @app.errorhandler(OrderNotFound)
    def _order_not_found(exc: OrderNotFound) -> Response:
        return Problem(404, "not-found", "Not Found", str(exc)).response()

    @app.errorhandler(IdempotencyConflict)
    def _idempotency(exc: IdempotencyConflict) -> Response:
        return Problem(409, "idempotency-key-reused", "Idempotency-Key reused with a different body", str(exc),
                       order_id=exc.order_id).response()

    @app.errorhandler(pymongo.errors.ConnectionFailure)
    def _mongo_down(exc: pymongo.errors.ConnectionFailure) -> Response:
        return unavailable("mongodb", exc).response()

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(kombu.exceptions.OperationalError)
    def _redis_down(exc: Exception) -> Response:
        return unavailable("redis", exc).response()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return Problem(500, "internal-error", "Internal Server Error",
                       "an unexpected error occurred; it has been logged").response()
