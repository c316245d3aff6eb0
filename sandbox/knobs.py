"""The fault-injection knobs of the bank, and parsing a POST /_sandbox/control body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.errors import ApiError
from sandbox.webhooks import MODES

FAILURE_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True)
class Knobs:
    capture_failures: int = 0  # the next N capture calls answer capture_failure_status
    capture_failure_status: int = 503
    capture_delay_s: float = 0.0  # the next capture_delay_count calls capture, then sleep this long
    capture_delay_count: int = 0
    upi_late_capture_delay_s: float = 0.3

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _number(value: Any, name: str, kind: type, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ApiError(f"{name} must be a{'n integer' if kind is int else ' number'}", field=name)
    if value < minimum:
        raise ApiError(f"{name} must be at least {minimum}", field=name)
    return kind(value)


def parse_control(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a control body into bank knobs and webhook knobs, refusing anything unknown."""
    bank: dict[str, Any] = {}
    hooks: dict[str, Any] = {}
    numbers: dict[str, tuple[dict[str, Any], str, type, float]] = {
        "capture_failures": (bank, "capture_failures", int, 0),
        "capture_delay_s": (bank, "capture_delay_s", float, 0),
        "capture_delay_count": (bank, "capture_delay_count", int, 0),
        "upi_late_capture_delay_s": (bank, "upi_late_capture_delay_s", float, 0),
        "webhook_duplicates": (hooks, "duplicates", int, 1),
        "webhook_attempts": (hooks, "attempts", int, 1),
        "webhook_first_delay_s": (hooks, "first_delay_s", float, 0),
        "webhook_timeout_s": (hooks, "timeout_s", float, 0.01),
    }
    for name, value in data.items():
        if name in numbers:
            target, key, kind, minimum = numbers[name]
            target[key] = _number(value, name, kind, minimum)
        elif name == "capture_failure_status":
            if value not in FAILURE_STATUSES:
                raise ApiError(f"capture_failure_status must be one of {FAILURE_STATUSES}", field=name)
            bank[name] = int(value)
        elif name == "webhook_mode":
            if value not in MODES:
                raise ApiError(f"webhook_mode must be one of {MODES}", field=name)
            hooks["mode"] = value
        elif name == "webhook_secret":
            if not isinstance(value, str) or not value:
                raise ApiError("webhook_secret must be a non-empty string", field=name)
            hooks["secret"] = value
        elif name == "webhook_url":
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise ApiError("webhook_url must be an http(s) URL", field=name)
            hooks["url"] = value
        else:
            raise ApiError(f"unknown control knob: {name}", field=name)
    if "capture_delay_s" in bank and "capture_delay_count" not in bank:
        bank["capture_delay_count"] = 1
    return bank, hooks
