"""Razorpay's error body, which the SDK turns into BadRequestError / GatewayError / ServerError."""

from __future__ import annotations

from typing import Any

BAD_REQUEST = "BAD_REQUEST_ERROR"
GATEWAY = "GATEWAY_ERROR"
SERVER = "SERVER_ERROR"


class ApiError(Exception):
    def __init__(self, description: str, *, status: int = 400, code: str = BAD_REQUEST,
                 field: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.code = code
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code, "description": self.description, "source": "business" if self.status < 500 else "NA",
            "step": "payment_initiation" if self.status < 500 else "NA",
            "reason": "input_validation_failed" if self.status < 500 else "server_error", "metadata": {},
        }
        if self.field:
            error["field"] = self.field
        return {"error": error}


def not_found() -> ApiError:
    """Razorpay answers an unknown id with 400, not 404."""
    return ApiError("The id provided does not exist")
