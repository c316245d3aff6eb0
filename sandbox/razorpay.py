"""The sandbox's Flask app: Razorpay's REST API under /v1, plus checkout and control routes.

All state lives in one `Bank` (see bank.py), reachable as `app.extensions["razorpay_sandbox"]`.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import control
from sandbox.bank import Bank
from sandbox.config import SandboxConfig
from sandbox.errors import SERVER, ApiError
from sandbox.web import EXTENSION, bank, body

log = logging.getLogger("sandbox")

api = Blueprint("razorpay_v1", __name__, url_prefix="/v1")


def create_app(config: SandboxConfig) -> Flask:
    config.validate()
    app = Flask("sandbox", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.extensions[EXTENSION] = Bank(config)
    app.register_blueprint(api)
    app.register_blueprint(control.checkout)
    app.register_blueprint(control.sandbox)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def _api_error(exc: ApiError) -> tuple[Response, int]:
    return jsonify(exc.body()), exc.status


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    description = "The requested URL was not found on the server." if status == 404 else (exc.description or "")
    return _api_error(ApiError(description, status=status, code=SERVER if status >= 500 else "BAD_REQUEST_ERROR"))


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _api_error(ApiError("The server encountered an error", status=500, code=SERVER))


@api.before_request
def _authenticate() -> None:
    """HTTP Basic with key_id:key_secret, as Razorpay's API wants."""
    cfg = bank().config
    auth = request.authorization
    ok = (auth is not None and auth.type == "basic"
          and hmac.compare_digest((auth.username or "").encode(), cfg.key_id.encode())
          and hmac.compare_digest((auth.password or "").encode(), cfg.key_secret.encode()))
    if not ok:
        raise ApiError("Authentication failed", status=401)


@api.post("/orders")
def create_order() -> Any:
    return bank().create_order(body())


@api.get("/orders/<order_id>")
def get_order(order_id: str) -> Any:
    return bank().get_order(order_id)


@api.get("/orders/<order_id>/payments")
def order_payments(order_id: str) -> Any:
    return bank().order_payments(order_id)


@api.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> Any:
    return bank().get_payment(payment_id)


@api.post("/payments/<payment_id>/capture")
def capture(payment_id: str) -> Any:
    return bank().capture(payment_id, body())


@api.post("/payments/<payment_id>/refund")
def refund(payment_id: str) -> Any:
    return bank().refund(payment_id, body())


@api.get("/payments/<payment_id>/refunds")
def payment_refunds(payment_id: str) -> Any:
    return bank().payment_refunds(payment_id)


@api.get("/payments/<payment_id>/refunds/<refund_id>")
def payment_refund(payment_id: str, refund_id: str) -> Any:
    return bank().payment_refund(payment_id, refund_id)


@api.get("/refunds/<refund_id>")
def get_refund(refund_id: str) -> Any:
    return bank().get_refund(refund_id)


@api.post("/customers")
def create_customer() -> Any:
    return bank().create_customer(body())


@api.get("/customers/<customer_id>")
def get_customer(customer_id: str) -> Any:
    return bank().get_customer(customer_id)


@api.get("/customers/<customer_id>/tokens")
def tokens(customer_id: str) -> Any:
    return bank().tokens(customer_id)


@api.get("/customers/<customer_id>/tokens/<token_id>")
def token(customer_id: str, token_id: str) -> Any:
    return bank().token(customer_id, token_id)


@api.delete("/customers/<customer_id>/tokens/<token_id>")
def delete_token(customer_id: str, token_id: str) -> Any:
    return bank().delete_token(customer_id, token_id)
