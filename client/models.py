"""The API's shapes, for the client: written on the OpenAPI document (/api/v1/openapi.json).

tests/unit/test_client.py checks each against the component of the same name in
the document, so the client cannot drift from the server. Unknown fields are
ignored: a newer server may add some.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

OrderStatus = Literal["accepted", "processing", "reserved", "awaiting_payment", "payment_failed", "confirmed",
                      "out_for_delivery", "delivered", "rejected", "expired", "cancelled", "refund_pending",
                      "refunded"]
PaymentMethod = Literal["cod", "upi", "card", "netbanking", "token"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Problem(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class RegisteredOut(_Model):
    status: Literal["accepted"]
    detail: str


class UserOut(_Model):
    id: str
    email: str
    role: str
    store_id: str | None
    phone: str | None


class TokensOut(_Model):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class LoginOut(TokensOut):
    user: UserOut
    two_factor: bool
    two_factor_enrolment_required: bool | None = None


class ItemOut(_Model):
    sku: str
    qty: int


class LineOut(_Model):
    sku: str
    name: str
    # As the catalog had it at the sale; absent on orders priced before lines kept it.
    category: str | None = None
    qty: int
    unit_price_paise: int
    line_total_paise: int


class EventOut(_Model):
    status: OrderStatus
    at_ms: int
    detail: dict[str, Any] | None = None


class CheckoutOut(_Model):
    attempt: int
    payment_id: str
    razorpay_order_id: str
    key_id: str
    amount_paise: int
    currency: str
    method: PaymentMethod
    customer_id: str | None = None
    token_id: str | None = None


class OrderOut(_Model):
    id: str
    status: OrderStatus
    customer_id: str
    store_id: str
    payment_method: PaymentMethod
    items: list[ItemOut]
    lines: list[LineOut]
    total_paise: int | None
    created_at_ms: int
    updated_at_ms: int
    events: list[EventOut]
    reject_reason: str | None = None
    reject_detail: dict[str, Any] | None = None
    payment: CheckoutOut | None = None
    pay_by_ms: int | None = None
    rider_id: str | None = None


class ProductOut(_Model):
    id: str
    store_id: str
    sku: str
    name: str
    brand: str | None
    category: str | None
    unit: str | None
    price_paise: int
    mrp_paise: int | None
    stock: int
    in_stock: bool


class ProductPage(_Model):
    items: list[ProductOut]
    total: int
    limit: int
    offset: int


class VerifiedOut(_Model):
    order_id: str
    payment_id: str
    status: str
