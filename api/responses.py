"""What the routes answer with, as pydantic models: the shapes of the domain's view functions.

They exist for the contract (api/contract.py) and for the typed client; the routes
still build their answers with the domain views (orders.view, catalog.product_view,
...), and the contract tests check the two agree. Models of shapes Kirana owns
forbid extra fields, so a field added to a view without its model fails the tests.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kirana.orders import PaymentMethod, RejectReason, Status


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    # Records whose fields come from elsewhere (task arguments, audit details, the gateway).
    model_config = ConfigDict(extra="allow")


# --- orders -------------------------------------------------------------------------

class ItemOut(_Out):
    sku: str
    qty: int


class LineOut(_Out):
    sku: str
    name: str
    qty: int
    unit_price_paise: int
    line_total_paise: int


class EventOut(_Out):
    status: Status
    at_ms: int
    detail: dict[str, Any] | None = None


class CheckoutOut(_Out):
    """What the app's checkout needs to pay at Razorpay."""

    attempt: int
    payment_id: str
    razorpay_order_id: str
    key_id: str
    amount_paise: int
    currency: Literal["INR"]
    method: PaymentMethod
    customer_id: str | None = None
    token_id: str | None = None


class OrderOut(_Out):
    """The order, with its events"""

    id: str
    status: Status
    customer_id: str
    store_id: str
    payment_method: PaymentMethod
    items: list[ItemOut]
    lines: list[LineOut]
    total_paise: int | None
    created_at_ms: int
    updated_at_ms: int
    events: list[EventOut]
    reject_reason: RejectReason | None = None
    reject_detail: dict[str, Any] | None = None
    payment: CheckoutOut | None = None
    pay_by_ms: int | None = None
    rider_id: str | None = None


class LocationAccepted(_Out):
    """The location was published"""

    order_id: str
    at_ms: int


# --- catalog ------------------------------------------------------------------------

class ProductOut(_Out):
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


class _Page(_Out):
    total: int
    limit: int
    offset: int


class ProductPage(_Page):
    """A page of products"""

    items: list[ProductOut]


# --- accounts -----------------------------------------------------------------------

class UserOut(_Out):
    """The account"""

    id: str
    email: str
    role: Literal["customer", "store_owner", "store_staff", "rider", "ops", "admin"]
    store_id: str | None
    phone: str | None


class MeOut(UserOut):
    """The signed-in account"""

    two_factor_enabled: bool


class TokensOut(_Out):
    """A new access token and refresh token"""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class LoginOut(TokensOut):
    """Signed in"""

    user: UserOut
    two_factor: bool
    two_factor_enrolment_required: bool | None = None


class EnrolmentOut(_Out):
    """Scan the QR code (or the URI) with an authenticator app, then confirm a code"""

    secret: str
    provisioning_uri: str
    qr_png: str


class RecoveryCodesOut(_Out):
    """Two-factor enabled: the one-time recovery codes"""

    recovery_codes: list[str]
    detail: str


class SmsSentOut(_Out):
    """A code was sent by SMS"""

    status: Literal["sent"]
    expires_in: int


# --- payments -----------------------------------------------------------------------

class VerifiedOut(_Out):
    """The checkout was recorded; the capture follows on the payments queue"""

    order_id: str
    payment_id: str
    status: Literal["verified"]


class SavedMethod(_Out):
    id: str
    method: str | None
    card: dict[str, Any] | None
    created_at: int | None


class SavedMethods(_Out):
    """Saved cards"""

    items: list[SavedMethod]


class WebhookAck(_Out):
    """The event is stored (once) and handled on the webhooks queue"""

    status: Literal["accepted", "duplicate"]
    event_id: str


# --- notifications ------------------------------------------------------------------

class DeliveryAttempt(_Out):
    at_ms: int
    ok: bool
    provider: str
    response: Any


class NotificationOut(_Out):
    id: str
    event: str
    channel: str
    subject: str | None
    body: str
    status: str
    read: bool
    created_at_ms: int
    due_at_ms: int
    log: list[DeliveryAttempt]


class NotificationPage(_Page):
    """A page of the inbox, newest first"""

    items: list[NotificationOut]


class ChannelsOut(_Out):
    sms: bool
    email: bool
    push: bool
    in_app: bool


class PreferencesOut(_Out):
    """Notification preferences"""

    channels: ChannelsOut
    language: Literal["en", "hi"]
    quiet_start: str | None
    quiet_end: str | None
    timezone: str
    push_token: str | None


# --- operations ---------------------------------------------------------------------

class AuditEntry(_Open):
    seq: int
    hash: str
    prev_hash: str
    event_id: str
    at_ms: int
    action: str
    actor: str | None
    target: str | None
    detail: dict[str, Any] | None
    ip: str | None


class AuditPage(_Page):
    """Audit entries, newest first"""

    items: list[AuditEntry]


class DeadLetter(_Open):
    """A dead letter"""

    id: str
    task_id: str
    task: str
    status: Literal["open", "replayed", "discarded"]
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    exc_type: str
    message: str
    attempts: int
    reason: str
    first_failed_at_ms: int
    last_failed_at_ms: int
    traceback: str | None = None


class DeadLetterPage(_Page):
    """Dead letters"""

    items: list[DeadLetter]


class Healthy(_Out):
    """The process is up"""

    status: Literal["ok"]


class Ready(_Out):
    """MongoDB and Redis answer and every pool has a live worker"""

    status: Literal["ready"]
    checks: dict[str, Any]
