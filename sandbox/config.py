"""The sandbox's settings: command-line flags, falling back to the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_KEY_ID = "rzp_test_kirana"
DEFAULT_KEY_SECRET = "kirana_sandbox_key_secret"
DEFAULT_WEBHOOK_SECRET = "kirana_sandbox_webhook_secret"
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/razorpay"


@dataclass(frozen=True)
class SandboxConfig:
    key_id: str = DEFAULT_KEY_ID
    key_secret: str = DEFAULT_KEY_SECRET
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_url: str = DEFAULT_WEBHOOK_URL
    webhook_attempts: int = 6  # deliveries of one event copy, the first included
    webhook_first_delay_s: float = 0.2  # wait before the first retry; doubles every retry
    webhook_timeout_s: float = 5.0  # per delivery attempt
    upi_late_capture_delay_s: float = 0.3  # failed_then_captured: failure → late capture
    account_id: str = "acc_sandbox"
    host: str = "127.0.0.1"
    port: int = 9100

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        """Environment values, then `overrides` (flags) that are not None, on top of the defaults."""
        cfg = cls(**settings_from(_ENV, env, overrides))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.key_id or not self.key_secret:
            raise ValueError("the key id and key secret must not be empty")
        if self.webhook_attempts < 1:
            raise ValueError("webhook attempts must be at least 1")
        if self.webhook_first_delay_s < 0 or self.webhook_timeout_s <= 0 or self.upi_late_capture_delay_s < 0:
            raise ValueError("delays must not be negative, and the webhook timeout must be positive")

    def describe(self) -> dict[str, Any]:
        """What is safe to print or serve: everything but the secrets."""
        return {
            "key_id": self.key_id,
            "webhook_url": self.webhook_url,
            "webhook_attempts": self.webhook_attempts,
            "webhook_first_delay_s": self.webhook_first_delay_s,
            "webhook_timeout_s": self.webhook_timeout_s,
            "upi_late_capture_delay_s": self.upi_late_capture_delay_s,
            "account_id": self.account_id,
        }


_ENV: list[tuple[str, str, type]] = [
    ("key_id", "RAZORPAY_KEY_ID", str),
    ("key_secret", "RAZORPAY_KEY_SECRET", str),
    ("webhook_secret", "RAZORPAY_WEBHOOK_SECRET", str),
    ("webhook_url", "SANDBOX_WEBHOOK_URL", str),
    ("webhook_attempts", "SANDBOX_WEBHOOK_ATTEMPTS", int),
    ("webhook_first_delay_s", "SANDBOX_WEBHOOK_FIRST_DELAY_S", float),
    ("webhook_timeout_s", "SANDBOX_WEBHOOK_TIMEOUT_S", float),
    ("upi_late_capture_delay_s", "SANDBOX_UPI_LATE_CAPTURE_DELAY_S", float),
    ("host", "SANDBOX_HOST", str),
    ("port", "SANDBOX_PORT", int),
]


def settings_from(spec: Any, env: dict[str, str] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """(field, variable, type) specs read from `env` (os.environ by default), then non-None `overrides`."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {name: kind(env[var]) for name, var, kind in spec if env.get(var)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values
