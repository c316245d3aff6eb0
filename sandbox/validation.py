"""Checking request bodies the way Razorpay does: 400 BAD_REQUEST_ERROR naming the field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.errors import ApiError

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def only(data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise ApiError(f"{', '.join(extra)} is/are not required and should not be sent", field=extra[0])


def amount(data: Mapping[str, Any], name: str = "amount", *, required: bool = True) -> int | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(f"The {name} field is required.", field=name)
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(f"The {name} must be an integer.", field=name)
    if value < 100:
        raise ApiError(f"The {name} must be atleast INR 1.00", field=name)
    return value


def currency(data: Mapping[str, Any], *, required: bool = True) -> str | None:
    value = data.get("currency")
    if value is None and not required:
        return None
    if value is None:
        raise ApiError("The currency field is required.", field="currency")
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise ApiError("The currency provided is not supported", field="currency")
    return value


def text(data: Mapping[str, Any], name: str, *, max_len: int = 255, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(f"The {name} field is required.", field=name)
        return None
    if not isinstance(value, str):
        raise ApiError(f"The {name} must be a string.", field=name)
    if len(value) > max_len:
        raise ApiError(f"The {name} may not be greater than {max_len} characters.", field=name)
    return value


def notes(data: Mapping[str, Any]) -> dict[str, Any]:
    value = data.get("notes")
    if value is None or value == []:
        return {}
    if not isinstance(value, dict):
        raise ApiError("The notes must be an array.", field="notes")
    if len(value) > 15:
        raise ApiError("Number of fields in notes should be less than or equal to 15", field="notes")
    for key, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool) or len(str(item)) > 256:
            raise ApiError(f"notes.{key} must be a string or number of at most 256 characters", field="notes")
    return dict(value)


def flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in (0, 1) or value in ("0", "1"):
        return str(value) == "1"
    if value in ("true", "false"):
        return value == "true"
    raise ApiError(f"The {name} field is invalid.", field=name)
