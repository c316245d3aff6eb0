"""Request helpers shared by the blueprints: the bank of this app, and the body as a dict."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from sandbox.bank import Bank
from sandbox.errors import ApiError

EXTENSION = "razorpay_sandbox"


def bank() -> Bank:
    found: Bank = current_app.extensions[EXTENSION]
    return found


def body() -> dict[str, Any]:
    """The JSON object the SDK sends (a JSON string, Content-type application/json), or a form."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.to_dict()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object")
    return data
