"""A small typed client for Kirana's HTTP API (requests).

    kirana = KiranaClient("http://127.0.0.1:8000")
    kirana.register("asha@example.in", "a long passphrase")
    kirana.login("asha@example.in", "a long passphrase")
    order = kirana.submit_order("store-blr-indiranagar", [("ATTA-5KG", 1)], "cod")
    kirana.get_order(order.id).status

- Every submit carries an Idempotency-Key (a new one per order unless given), and
  its retries reuse it, so a retried submit never places a second order.
- A 503 (a dependency is down) and a lost connection are retried with exponential
  backoff, waiting at least what Retry-After asks; other errors raise ApiError
  with the server's problem document.
- A 401 on an expired access token refreshes once and retries.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
from pydantic import BaseModel

from client.models import LoginOut, OrderOut, Problem, ProductPage, RegisteredOut, TokensOut, VerifiedOut

Model = TypeVar("Model", bound=BaseModel)

# Requests that may be sent again after a lost answer: reads, and writes the server deduplicates.
_SAFE = {"GET", "HEAD", "PUT", "DELETE"}


class ApiError(Exception):
    """A 4xx/5xx answer, with the server's RFC 9457 problem document."""

    def __init__(self, status: int, problem: Problem) -> None:
        super().__init__(f"{status} {problem.title}: {problem.detail or ''}".strip())
        self.status = status
        self.problem = problem


class Unavailable(ApiError):
    """Still 503 after every retry."""


def retry_after_s(resp: requests.Response) -> float | None:
    """Retry-After in seconds (the delta form; Kirana never sends a date)."""
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class KiranaClient:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0, retries: int = 5, backoff_s: float = 0.2,
                 max_backoff_s: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.http = requests.Session()
        self.tokens: TokensOut | None = None

    # --- transport ------------------------------------------------------------------

    def _delay(self, attempt: int, resp: requests.Response | None) -> float:
        # Full jitter, so many clients retrying after one outage do not arrive together.
        backoff = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))
        asked = retry_after_s(resp) if resp is not None else None
        return max(backoff, asked or 0.0)

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, retry_lost: bool | None = None,
                _refreshed: bool = False) -> requests.Response:
        """Send with retries on 503 (and on a lost connection when the request is safe to repeat)."""
        retry_lost = method in _SAFE if retry_lost is None else retry_lost
        sent = dict(headers or {})
        if self.tokens is not None:
            sent["Authorization"] = f"Bearer {self.tokens.access_token}"
        url = f"{self.base_url}{path}"
        for attempt in range(self.retries + 1):
            try:
                resp = self.http.request(method, url, json=json, params=params, headers=sent, timeout=self.timeout_s)
            except requests.ConnectionError:
                if not retry_lost or attempt == self.retries:
                    raise
                self.sleep(self._delay(attempt, None))
                continue
            if resp.status_code == 503 and attempt < self.retries:
                self.sleep(self._delay(attempt, resp))
                continue
            break
        expired = resp.status_code == 401 and self.tokens is not None and not path.startswith("/api/v1/auth/")
        if expired and not _refreshed:
            self.refresh()
            return self.request(method, path, json=json, params=params, headers=headers, retry_lost=retry_lost,
                                _refreshed=True)
        if resp.status_code >= 400:
            raise (Unavailable if resp.status_code == 503 else ApiError)(resp.status_code, _problem(resp))
        return resp

    def _json(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return model.model_validate(self.request(method, path, **kwargs).json())

    # --- auth -----------------------------------------------------------------------

    def register(self, email: str, password: str, phone: str | None = None) -> RegisteredOut:
        """The same answer for a new address and a taken one; log in next (a mail tells the address which)."""
        body = {"email": email, "password": password, **({"phone": phone} if phone else {})}
        return self._json(RegisteredOut, "POST", "/api/v1/auth/register", json=body)

    def login(self, email: str, password: str, *, otp: str | None = None) -> LoginOut:
        self.tokens = None
        body = {"email": email, "password": password, **({"otp": otp} if otp else {})}
        login = self._json(LoginOut, "POST", "/api/v1/auth/login", json=body)
        self.tokens = login
        return login

    def refresh(self) -> TokensOut:
        if self.tokens is None:
            raise RuntimeError("log in first")
        refresh_token = self.tokens.refresh_token
        self.tokens = None
        self.tokens = self._json(TokensOut, "POST", "/api/v1/auth/refresh", json={"refresh_token": refresh_token})
        return self.tokens

    # --- catalog and orders -----------------------------------------------------------

    def products(self, *, limit: int = 200, offset: int = 0, store_id: str | None = None) -> ProductPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset, **({"store_id": store_id} if store_id else {})}
        return self._json(ProductPage, "GET", "/api/v1/products", params=params)

    def submit_order(self, store_id: str, items: Iterable[tuple[str, int]], payment_method: str, *,
                     token_id: str | None = None, idempotency_key: str | None = None) -> OrderOut:
        """Place an order (answered 202; the orders pool completes it). Retries reuse the key."""
        body: dict[str, Any] = {"store_id": store_id, "payment_method": payment_method,
                                "items": [{"sku": sku, "qty": qty} for sku, qty in items]}
        if token_id:
            body["token_id"] = token_id
        key = idempotency_key or str(uuid.uuid4())
        return self._json(OrderOut, "POST", "/api/v1/orders", json=body, headers={"Idempotency-Key": key},
                          retry_lost=True)

    def get_order(self, order_id: str) -> OrderOut:
        return self._json(OrderOut, "GET", f"/api/v1/orders/{order_id}")

    def wait_order(self, order_id: str, until: Callable[[OrderOut], bool], *, timeout_s: float = 60.0,
                   poll_s: float = 0.2) -> OrderOut:
        """Poll the order until `until(order)` or the timeout (then the last state seen)."""
        deadline = time.monotonic() + timeout_s
        while True:
            order = self.get_order(order_id)
            if until(order) or time.monotonic() > deadline:
                return order
            self.sleep(poll_s)

    def cancel_order(self, order_id: str) -> OrderOut:
        return self._json(OrderOut, "POST", f"/api/v1/orders/{order_id}/cancel")

    def retry_payment(self, order_id: str) -> OrderOut:
        return self._json(OrderOut, "POST", f"/api/v1/orders/{order_id}/retry-payment")

    def verify_payment(self, razorpay_order_id: str, razorpay_payment_id: str, razorpay_signature: str) -> VerifiedOut:
        """Report what Razorpay Checkout returned to the app; the capture follows on the server."""
        body = {"razorpay_order_id": razorpay_order_id, "razorpay_payment_id": razorpay_payment_id,
                "razorpay_signature": razorpay_signature}
        return self._json(VerifiedOut, "POST", "/api/v1/payments/verify", json=body, retry_lost=True)


def _problem(resp: requests.Response) -> Problem:
    try:
        return Problem.model_validate(resp.json())
    except ValueError:
        return Problem(type="about:blank", title=resp.reason or "Error", status=resp.status_code,
                       detail=resp.text[:200] or None)
