"""The bank's records, and their JSON shapes as Razorpay serves them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Order:
    id: str
    amount: int
    currency: str
    receipt: str | None
    notes: dict[str, Any]
    customer_id: str | None
    payment_capture: bool
    created_at: int
    amount_paid: int = 0
    attempts: int = 0
    payment_ids: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.amount_paid > 0:
            return "paid"
        return "attempted" if self.attempts else "created"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "entity": "order", "amount": self.amount, "amount_paid": self.amount_paid,
            "amount_due": max(0, self.amount - self.amount_paid), "currency": self.currency, "receipt": self.receipt,
            "offer_id": None, "status": self.status, "attempts": self.attempts, "notes": dict(self.notes),
            "customer_id": self.customer_id, "created_at": self.created_at,
        }


@dataclass
class Payment:
    id: str
    order_id: str
    amount: int
    currency: str
    method: str
    created_at: int
    status: str = "created"  # created | authorized | captured | refunded | failed
    customer_id: str | None = None
    token_id: str | None = None
    vpa: str | None = None
    bank: str | None = None
    card: dict[str, str] | None = None
    email: str | None = None
    contact: str | None = None
    amount_refunded: int = 0
    error_code: str | None = None
    error_description: str | None = None
    captured_at: int | None = None
    late_authorized: bool = False

    @property
    def captured(self) -> bool:
        return self.captured_at is not None

    @property
    def refund_status(self) -> str | None:
        if self.amount_refunded == 0:
            return None
        return "full" if self.amount_refunded >= self.amount else "partial"

    def as_json(self) -> dict[str, Any]:
        failed = self.status == "failed"
        return {
            "id": self.id, "entity": "payment", "amount": self.amount, "currency": self.currency,
            "status": self.status, "order_id": self.order_id, "invoice_id": None, "international": False,
            "method": self.method, "amount_refunded": self.amount_refunded, "refund_status": self.refund_status,
            "captured": self.captured, "description": None,
            "card_id": ("card_" + self.id[4:]) if self.method == "card" else None,
            "card": dict(self.card) if self.card else None, "bank": self.bank, "wallet": None, "vpa": self.vpa,
            "email": self.email, "contact": self.contact, "customer_id": self.customer_id,
            "token_id": self.token_id, "notes": [], "fee": None, "tax": None,
            "error_code": self.error_code, "error_description": self.error_description,
            "error_source": "customer" if failed else None, "error_step": "payment_authorization" if failed else None,
            "error_reason": "payment_failed" if failed else None,
            "acquirer_data": {"rrn": None} if self.method == "upi" else {},
            "created_at": self.created_at,
        }


@dataclass
class Refund:
    id: str
    payment_id: str
    amount: int
    currency: str
    receipt: str | None
    notes: dict[str, Any]
    created_at: int
    status: str = "processed"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "entity": "refund", "amount": self.amount, "currency": self.currency,
            "payment_id": self.payment_id, "notes": dict(self.notes), "receipt": self.receipt,
            "acquirer_data": {"arn": None}, "status": self.status, "speed_processed": "normal",
            "speed_requested": "normal", "created_at": self.created_at,
        }


@dataclass
class Customer:
    id: str
    name: str | None
    email: str | None
    contact: str | None
    gstin: str | None
    notes: dict[str, Any]
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "entity": "customer", "name": self.name, "email": self.email, "contact": self.contact,
            "gstin": self.gstin, "notes": dict(self.notes), "created_at": self.created_at,
        }


@dataclass
class Token:
    id: str
    customer_id: str
    last4: str
    network: str
    created_at: int
    used_at: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "entity": "token", "token": self.id[len("token_"):], "bank": None, "wallet": None,
            "method": "card",
            "card": {"entity": "card", "name": None, "last4": self.last4, "network": self.network, "type": "credit",
                     "issuer": None, "international": False, "emi": False, "sub_type": "consumer",
                     "expiry_month": 12, "expiry_year": 2030},
            "recurring": False, "auth_type": None, "mrn": None, "used_at": self.used_at,
            "customer_id": self.customer_id, "created_at": self.created_at, "expired_at": 1924972200,
            "status": "active", "notes": [],
        }


def collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"entity": "collection", "count": len(items), "items": items}
