"""The payment gateway: Razorpay through its official SDK, and its signatures.

Every call passes a timeout (the SDK sets none) and a fresh dict of data
(`payment.capture` mutates a shared default dict). Failures are sorted into
`GatewayUnavailable` (5xx, timeouts, connection errors: worth retrying) and
`GatewayRefused` (4xx: retrying would not help).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import razorpay
import razorpay.errors
import requests

from kirana.config import Settings, settings

T = TypeVar("T")


class GatewayError(Exception):
    pass


class GatewayUnavailable(GatewayError):
    """Transient: the gateway did not answer, or answered 5xx."""


class GatewayRefused(GatewayError):
    """The gateway said no (4xx): a bad request, or a state that forbids it."""


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except razorpay.errors.BadRequestError as exc:
        raise GatewayRefused(str(exc)) from None
    except (razorpay.errors.ServerError, razorpay.errors.GatewayError) as exc:
        raise GatewayUnavailable(f"razorpay answered an error: {exc}") from None
    except requests.exceptions.Timeout:
        raise GatewayUnavailable("razorpay did not answer in time") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.JSONDecodeError) as exc:
        raise GatewayUnavailable(f"razorpay unreachable: {type(exc).__name__}") from None


class Razorpay:
    """The few Razorpay operations Kirana uses."""

    def __init__(self, cfg: Settings | None = None) -> None:
        cfg = cfg or settings()
        self.key_id = cfg.razorpay_key_id
        self._timeout = cfg.razorpay_timeout_s
        self._client = razorpay.Client(auth=(cfg.razorpay_key_id, cfg.razorpay_key_secret))
        self._client.base_url = cfg.razorpay_base_url.rstrip("/")

    def create_order(self, amount_paise: int, receipt: str, notes: dict[str, str],
                     customer_id: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"amount": amount_paise, "currency": "INR", "receipt": receipt, "notes": dict(notes)}
        if customer_id:
            data["customer_id"] = customer_id
        return _call(lambda: self._client.order.create(data=data, timeout=self._timeout))

    def order_payments(self, rzp_order_id: str) -> list[dict[str, Any]]:
        found = _call(lambda: self._client.order.payments(rzp_order_id, data={}, timeout=self._timeout))
        return list(found.get("items", []))

    def fetch_payment(self, payment_id: str) -> dict[str, Any]:
        return _call(lambda: self._client.payment.fetch(payment_id, data={}, timeout=self._timeout))

    def capture(self, payment_id: str, amount_paise: int) -> dict[str, Any]:
        return _call(lambda: self._client.payment.capture(payment_id, amount_paise, data={"currency": "INR"},
                                                          timeout=self._timeout))

    def refund(self, payment_id: str, amount_paise: int, receipt: str) -> dict[str, Any]:
        data = {"amount": amount_paise, "receipt": receipt}
        return _call(lambda: self._client.payment.refund(payment_id, data=data, timeout=self._timeout))

    def create_customer(self, name: str, email: str) -> dict[str, Any]:
        data = {"name": name, "email": email, "fail_existing": "0"}
        return _call(lambda: self._client.customer.create(data=data, timeout=self._timeout))

    def saved_tokens(self, customer_id: str) -> list[dict[str, Any]]:
        found = _call(lambda: self._client.token.all(customer_id, data={}, timeout=self._timeout))
        return list(found.get("items", []))

    def delete_token(self, customer_id: str, token_id: str) -> None:
        _call(lambda: self._client.token.delete(customer_id, token_id, data={}, timeout=self._timeout))


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _bytes(signature: str) -> bytes:
    # compare_digest refuses a str with non-ASCII characters (a TypeError, a 500): compare bytes,
    # and any such signature is simply wrong.
    return signature.encode("utf-8", "surrogatepass")


def checkout_signature_valid(key_secret: str, rzp_order_id: str, rzp_payment_id: str, signature: str) -> bool:
    """Razorpay Checkout's signature: HMAC-SHA256 of "order_id|payment_id" with the key secret."""
    expected = _hex_hmac(key_secret, f"{rzp_order_id}|{rzp_payment_id}".encode())
    return hmac.compare_digest(expected.encode(), _bytes(signature))


def webhook_signature_valid(secrets: Iterable[str], body: bytes, signature: str) -> bool:
    """True when `signature` is the body's HMAC under any configured secret (current, previous)."""
    valid = False
    for secret in secrets:
        if secret:
            # No early exit: every secret is tried, so timing says nothing about which matched.
            valid |= hmac.compare_digest(_hex_hmac(secret, body).encode(), _bytes(signature))
    return valid
