"""Razorpay-looking ids, timestamps and HMAC signatures."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """`prefix` + "_" + 14 alphanumerics, like Razorpay's `pay_29QQoUBi66xm2f`."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(14))


def now() -> int:
    return int(time.time())


def hmac_hex(secret: str, message: str | bytes) -> str:
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def checkout_signature(key_secret: str, order_id: str, payment_id: str) -> str:
    """What Razorpay Checkout hands the app: HMAC-SHA256 of "order_id|payment_id" with the key secret."""
    return hmac_hex(key_secret, f"{order_id}|{payment_id}")
