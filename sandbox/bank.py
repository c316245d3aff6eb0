"""The bank: every order, payment, refund, customer, token, knob and counter, behind one lock.

Webhooks are emitted while the lock is held, so events are recorded in the order the
state changed; they are delivered later by the dispatcher's own thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from sandbox import validation as v
from sandbox.config import SandboxConfig
from sandbox.entities import Customer, Order, Payment, Refund, Token, collection
from sandbox.errors import SERVER, ApiError, not_found
from sandbox.ids import checkout_signature, new_id, now
from sandbox.knobs import Knobs, parse_control
from sandbox.webhooks import Dispatcher

CARD_METHODS = ("card", "netbanking")
UPI_OUTCOMES = ("success", "failure", "failed_then_captured")


class Bank:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.webhooks = Dispatcher(config)
        self._lock = threading.RLock()
        self._knobs = Knobs(upi_late_capture_delay_s=config.upi_late_capture_delay_s)
        self._orders: dict[str, Order] = {}
        self._payments: dict[str, Payment] = {}
        self._refunds: dict[str, Refund] = {}
        self._customers: dict[str, Customer] = {}
        self._tokens: dict[str, Token] = {}
        self._captures: Counter[str] = Counter()
        self._capture_calls = 0
        self._refund_count = 0

    def close(self) -> None:
        self.webhooks.stop()

    # -- lookups -----------------------------------------------------------------------------

    def _order(self, order_id: str) -> Order:
        if order_id not in self._orders:
            raise not_found()
        return self._orders[order_id]

    def _payment(self, payment_id: str) -> Payment:
        if payment_id not in self._payments:
            raise not_found()
        return self._payments[payment_id]

    def _customer(self, customer_id: str) -> Customer:
        if customer_id not in self._customers:
            raise not_found()
        return self._customers[customer_id]

    def _token(self, customer_id: str, token_id: str) -> Token:
        token = self._tokens.get(token_id)
        if token is None or token.customer_id != customer_id:
            raise not_found()
        return token

    # -- orders ------------------------------------------------------------------------------

    def create_order(self, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("amount", "currency", "receipt", "notes", "customer_id", "payment_capture", "partial_payment"))
        amount = v.amount(data)
        currency = v.currency(data)
        receipt = v.text(data, "receipt", max_len=40)
        notes = v.notes(data)
        customer_id = v.text(data, "customer_id", max_len=40)
        auto_capture = v.flag(data, "payment_capture", False)
        assert amount is not None and currency is not None
        with self._lock:
            if customer_id is not None:
                self._customer(customer_id)
            order = Order(new_id("order"), amount, currency, receipt, notes, customer_id, auto_capture, now())
            self._orders[order.id] = order
            return order.as_json()

    def get_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return self._order(order_id).as_json()

    def order_payments(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            order = self._order(order_id)
            return collection([self._payments[p].as_json() for p in reversed(order.payment_ids)])

    # -- payments ----------------------------------------------------------------------------

    def get_payment(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            return self._payment(payment_id).as_json()

    def capture(self, payment_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Capture an authorized payment; the knobs may fail the call, or delay its answer."""
        with self._lock:
            self._capture_calls += 1
            knobs = self._knobs
            if knobs.capture_failures > 0:
                self._knobs = replace(knobs, capture_failures=knobs.capture_failures - 1)
                raise ApiError("The server encountered an error. The incident has been reported to admins",
                               status=knobs.capture_failure_status, code=SERVER)
            delay = 0.0
            if knobs.capture_delay_count > 0:
                self._knobs = replace(knobs, capture_delay_count=knobs.capture_delay_count - 1)
                delay = knobs.capture_delay_s
            answer: dict[str, Any] | None = None
            refused: ApiError | None = None
            try:
                answer = self._capture(payment_id, data)
            except ApiError as exc:
                refused = exc
        if delay:
            time.sleep(delay)  # after the capture: a client that gives up now leaves a captured payment behind
        if refused is not None:
            raise refused
        assert answer is not None
        return answer

    def _capture(self, payment_id: str, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("amount", "currency"))
        payment = self._payment(payment_id)
        amount = v.amount(data)
        currency = v.currency(data)
        if payment.status in ("captured", "refunded"):
            raise ApiError("This payment has already been captured")
        if payment.status != "authorized":
            raise ApiError("Only payments which have been authorized and not yet captured can be captured")
        if amount != payment.amount:
            raise ApiError("Capture amount must be equal to the amount authorized", field="amount")
        if currency != payment.currency:
            raise ApiError("Currency should be same as payment currency", field="currency")
        self._mark_captured(payment)
        return payment.as_json()

    def _mark_captured(self, payment: Payment) -> None:
        payment.status = "captured"
        payment.captured_at = now()
        payment.error_code = payment.error_description = None
        order = self._orders[payment.order_id]
        order.amount_paid += payment.amount
        self._captures[payment.id] += 1
        self.webhooks.emit("payment.captured", {"payment": payment.as_json()})
        self.webhooks.emit("order.paid", {"payment": payment.as_json(), "order": order.as_json()})

    # -- refunds -----------------------------------------------------------------------------

    def refund(self, payment_id: str, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("amount", "speed", "notes", "receipt"))
        amount = v.amount(data, required=False)
        notes = v.notes(data)
        receipt = v.text(data, "receipt", max_len=40)
        with self._lock:
            payment = self._payment(payment_id)
            if payment.status == "refunded":
                raise ApiError("The payment has been fully refunded already")
            if payment.status != "captured":
                raise ApiError("The payment has not been captured")
            left = payment.amount - payment.amount_refunded
            amount = left if amount is None else amount
            if amount > left:
                raise ApiError("The total refund amount is greater than the refund payment amount", field="amount")
            refund = Refund(new_id("rfnd"), payment.id, amount, payment.currency, receipt, notes, now())
            self._refunds[refund.id] = refund
            self._refund_count += 1
            payment.amount_refunded += amount
            if payment.amount_refunded == payment.amount:
                payment.status = "refunded"
            self.webhooks.emit("refund.processed", {"refund": refund.as_json(), "payment": payment.as_json()})
            return refund.as_json()

    def get_refund(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            if refund_id not in self._refunds:
                raise not_found()
            return self._refunds[refund_id].as_json()

    def payment_refunds(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            self._payment(payment_id)
            return collection([r.as_json() for r in reversed(self._refunds.values()) if r.payment_id == payment_id])

    def payment_refund(self, payment_id: str, refund_id: str) -> dict[str, Any]:
        with self._lock:
            refund = self._refunds.get(refund_id)
            if refund is None or refund.payment_id != payment_id:
                raise not_found()
            return refund.as_json()

    # -- customers and tokens ----------------------------------------------------------------

    def create_customer(self, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("name", "email", "contact", "fail_existing", "notes", "gstin"))
        name = v.text(data, "name", max_len=50)
        email = v.text(data, "email", max_len=64)
        contact = v.text(data, "contact", max_len=15)
        gstin = v.text(data, "gstin", max_len=15)
        notes = v.notes(data)
        fail_existing = v.flag(data, "fail_existing", True)
        if email is not None and "@" not in email:
            raise ApiError("The email must be a valid email address.", field="email")
        with self._lock:
            existing = next((c for c in self._customers.values()
                             if (email and c.email == email) or (not email and contact and c.contact == contact)),
                            None)
            if existing is not None:
                if fail_existing:
                    raise ApiError("Customer already exists for the merchant")
                return existing.as_json()
            customer = Customer(new_id("cust"), name, email, contact, gstin, notes, now())
            self._customers[customer.id] = customer
            return customer.as_json()

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        with self._lock:
            return self._customer(customer_id).as_json()

    def tokens(self, customer_id: str) -> dict[str, Any]:
        with self._lock:
            self._customer(customer_id)
            return collection([t.as_json() for t in reversed(self._tokens.values()) if t.customer_id == customer_id])

    def token(self, customer_id: str, token_id: str) -> dict[str, Any]:
        with self._lock:
            return self._token(customer_id, token_id).as_json()

    def delete_token(self, customer_id: str, token_id: str) -> dict[str, Any]:
        with self._lock:
            self._token(customer_id, token_id)
            del self._tokens[token_id]
            return {"deleted": True}

    # -- checkout (the customer's side) ------------------------------------------------------

    def _new_payment(self, order: Order, method: str, customer_id: str | None) -> Payment:
        if order.status == "paid":
            raise ApiError("Order has already been paid")
        customer = self._customer(customer_id) if customer_id else None
        payment = Payment(new_id("pay"), order.id, order.amount, order.currency, method, now(),
                          customer_id=customer_id, email=customer.email if customer else None,
                          contact=customer.contact if customer else None)
        self._payments[payment.id] = payment
        order.payment_ids.append(payment.id)
        order.attempts += 1
        return payment

    def _authorized(self, order: Order, payment: Payment) -> dict[str, Any]:
        payment.status = "authorized"
        self.webhooks.emit("payment.authorized", {"payment": payment.as_json()})
        if order.payment_capture:
            self._mark_captured(payment)
        return {"razorpay_order_id": order.id, "razorpay_payment_id": payment.id,
                "razorpay_signature": checkout_signature(self.config.key_secret, order.id, payment.id)}

    def _failed(self, payment: Payment, data: dict[str, Any]) -> dict[str, Any]:
        payment.status = "failed"
        payment.error_code = v.text(data, "error_code", max_len=40) or "BAD_REQUEST_ERROR"
        payment.error_description = v.text(data, "error_description") or "Payment failed"
        self.webhooks.emit("payment.failed", {"payment": payment.as_json()})
        return {"razorpay_payment_id": payment.id,
                "error": {"code": payment.error_code, "description": payment.error_description,
                          "source": "customer", "step": "payment_authorization", "reason": "payment_failed",
                          "metadata": {"order_id": payment.order_id, "payment_id": payment.id}}}

    @staticmethod
    def _card_method(data: dict[str, Any]) -> str:
        method = data.get("method", "card")
        if method not in CARD_METHODS:
            raise ApiError("Invalid payment method: use card or netbanking (UPI has its own route)", field="method")
        return str(method)

    def authorize(self, order_id: str, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("method", "save", "customer_id", "token_id", "card", "bank"))
        method = self._card_method(data)
        save = v.flag(data, "save", False)
        token_id = v.text(data, "token_id", max_len=40)
        card = data.get("card") or {}
        if not isinstance(card, dict):
            raise ApiError("card must be an object like {\"last4\": \"1111\", \"network\": \"Visa\"}", field="card")
        with self._lock:
            order = self._order(order_id)
            customer_id = v.text(data, "customer_id", max_len=40) or order.customer_id
            if (save or token_id) and method != "card":
                raise ApiError("Only cards can be saved or paid with a saved token", field="method")
            if (save or token_id) and not customer_id:
                raise ApiError("customer_id is required to save a card or pay with a saved token",
                               field="customer_id")
            token = self._token(customer_id, token_id) if token_id and customer_id else None
            payment = self._new_payment(order, method, customer_id)
            if method == "netbanking":
                payment.bank = str(data.get("bank") or "HDFC")
            elif token is not None:
                token.used_at = now()
                payment.token_id = token.id
                payment.card = {"last4": token.last4, "network": token.network}
            else:
                payment.card = {"last4": str(card.get("last4", "1111"))[-4:],
                                "network": str(card.get("network", "Visa"))}
                if save and customer_id:
                    token = Token(new_id("token"), customer_id, payment.card["last4"], payment.card["network"], now())
                    self._tokens[token.id] = token
                    payment.token_id = token.id
            return self._authorized(order, payment)

    def fail(self, order_id: str, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("method", "customer_id", "error_code", "error_description"))
        method = self._card_method(data)
        with self._lock:
            order = self._order(order_id)
            customer_id = v.text(data, "customer_id", max_len=40) or order.customer_id
            payment = self._new_payment(order, method, customer_id)
            if method == "netbanking":
                payment.bank = "HDFC"
            return self._failed(payment, data)

    def upi(self, order_id: str, data: dict[str, Any]) -> dict[str, Any]:
        v.only(data, ("flow", "vpa", "outcome", "customer_id", "error_code", "error_description"))
        if data.get("flow", "intent") not in ("intent", "collect"):
            raise ApiError("flow must be intent or collect", field="flow")
        outcome = data.get("outcome", "success")
        if outcome not in UPI_OUTCOMES:
            raise ApiError("outcome must be success, failure or failed_then_captured", field="outcome")
        vpa = v.text(data, "vpa", max_len=100) or "asha@okicici"
        if "@" not in vpa:
            raise ApiError("Invalid VPA. Please enter a valid Virtual Payment Address", field="vpa")
        with self._lock:
            order = self._order(order_id)
            customer_id = v.text(data, "customer_id", max_len=40) or order.customer_id
            payment = self._new_payment(order, "upi", customer_id)
            payment.vpa = vpa
            if outcome == "success":
                return self._authorized(order, payment)
            answer = self._failed(payment, data)
            if outcome == "failed_then_captured":
                timer = threading.Timer(self._knobs.upi_late_capture_delay_s, self._late_capture, args=(payment.id,))
                timer.daemon = True
                timer.start()
            return answer

    def _late_capture(self, payment_id: str) -> None:
        """The bank's late authorization of a failed UPI payment, auto-captured (Razorpay: normal for UPI)."""
        with self._lock:
            payment = self._payments[payment_id]
            if payment.status != "failed":
                return
            payment.late_authorized = True
            self._mark_captured(payment)

    # -- control -----------------------------------------------------------------------------

    def knobs(self) -> dict[str, Any]:
        with self._lock:
            return {**self._knobs.describe(), **self.webhooks.knobs().describe()}

    def control(self, data: dict[str, Any]) -> dict[str, Any]:
        bank_changes, hook_changes = parse_control(data)
        with self._lock:
            self._knobs = replace(self._knobs, **bank_changes)
            if hook_changes:
                self.webhooks.configure(**hook_changes)
            return self.knobs()

    def reset(self) -> dict[str, Any]:
        with self._lock:
            self._knobs = Knobs(upi_late_capture_delay_s=self.config.upi_late_capture_delay_s)
            self.webhooks.reset()
            return self.knobs()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"captures": dict(self._captures), "capture_calls": self._capture_calls,
                    "refunds": self._refund_count, "webhooks": self.webhooks.stats()}
