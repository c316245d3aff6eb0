"""What the routes answer with, as pydantic models: the shapes of the domain's view functions.

They exist for the contract (api/contract.py) and for the typed client; the routes
still build their answers with the domain views (orders.view, catalog.product_view,
...), and the contract tests check the two agree. Models of shapes Kirana owns
forbid extra fields, so a field added to a view without its model fails the tests.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    # As the catalog had it at the sale; absent on orders priced before lines kept it.
    category: str | None = None
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
    # With loyalty points redeemed (OrderIn.redeem_points): the discount is known once the order is processed.
    redeem_points: int | None = None
    subtotal_paise: int | None = None
    discount_paise: int | None = None


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


class RegisteredOut(_Out):
    """The same answer for a new address and a taken one (a mail to the address says which)"""

    status: Literal["accepted"]
    detail: str


class EnrolmentTokenOut(_Out):
    """A one-time two-factor enrolment token for a privileged user"""

    enrolment_token: str
    expires_in: int


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


class BulkDeadLetters(_Out):
    """What a bulk dead-letter action took (or, dry, would take)"""

    action: Literal["replay", "discard"]
    dry_run: bool
    selection: dict[str, Any]
    count: int  # matching now (dry run, replay) or discarded
    sample: list[DeadLetter]
    job_id: str | None = None  # the paced replay's task
    per_second: float | None = None


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


# --- catalog writes -----------------------------------------------------------------

class ProductWritten(ProductOut):
    """The product as stored; the search index follows (never waited for)"""

    # How the indexer run was asked for (tasks.search.request_indexing_quietly).
    search: Literal["enqueued", "outbox", "coalesced", "deferred"]


# --- search -------------------------------------------------------------------------

class SearchHit(_Out):
    id: str
    store_id: str | None
    sku: str | None
    name: str
    brand: str | None
    category: str | None
    unit: str | None
    price_paise: int
    mrp_paise: int | None
    stock: int
    in_stock: bool
    popularity: int
    score: float


class FacetCount(_Out):
    value: str
    count: int


class StockFacet(_Out):
    true: int
    false: int


class Facets(_Out):
    category: list[FacetCount]
    brand: list[FacetCount]
    price: list[FacetCount]
    in_stock: StockFacet


class SearchResults(_Out):
    """A page of products matching the query, with facets"""

    query: str
    interpreted: list[str]
    relaxed: bool
    total: int
    page: int
    per_page: int
    sort: Literal["relevance", "price_asc", "price_desc", "popularity"]
    items: list[SearchHit]
    facets: Facets
    index_version: str | None


class Suggestion(_Out):
    kind: str
    text: str


class Suggestions(_Out):
    """Product lines, brands and categories starting with what was typed"""

    query: str
    suggestions: list[Suggestion]


class Enqueued(_Out):
    """The task was enqueued (or parked in the outbox while the broker is down)"""

    task: str
    status: Literal["enqueued", "outbox"]


class SearchStatus(_Out):
    """The live index and any build in progress"""

    version: str | None
    docs: int
    built_at_ms: int | None
    building: str | None
    lag_s: float


class SynonymGroups(_Out):
    """Synonym groups by name"""

    groups: dict[str, list[str]]


class SynonymGroup(_Out):
    """The group as stored (terms normalized, sorted, once each)"""

    group: str
    terms: list[str]


# --- loyalty ------------------------------------------------------------------------

Scope = Literal["store", "city"]
Period = Literal["day", "week", "month", "all"]


class BoardEntry(_Out):
    rank: int
    name: str
    member: str = Field(description="a masked tag of the account (never its id)")
    you: bool = Field(description="this entry is the reader's own")
    points: int


class Leaderboard(_Out):
    """The board's top entries for the current bucket of the period"""

    scope: Scope
    scope_id: str
    period: Period
    bucket: str
    entries: list[BoardEntry]


class LedgerEntry(_Out):
    id: str
    order_id: str | None
    rule: str
    kind: str
    points: int
    at_ms: int


class Achievement(_Out):
    id: str
    title: str
    title_hi: str
    at_ms: int
    order_id: str | None


class Standing(_Out):
    scope: Scope
    scope_id: str
    period: Period
    bucket: str
    rank: int
    points: int


class LoyaltySummary(_Out):
    """The customer's points, recent entries, achievements and ranks"""

    customer_id: str
    balance: int
    point_value_paise: int
    recent: list[LedgerEntry]
    achievements: list[Achievement]
    ranks: list[Standing]


# --- backups ------------------------------------------------------------------------

class BackupRun(_Out):
    """A backup run, as kirana.backups.catalog records it (fields appear as the run gets there)"""

    id: str
    status: Literal["running", "succeeded", "failed", "pruned"]
    by: str
    reason: str
    path: str
    started_at_ms: int
    updated_at_ms: int
    finished_at_ms: int | None = None
    duration_ms: int | None = None
    documents: int | None = None
    bytes: int | None = None
    collections: int | None = None
    error: str | None = None
    verified_at_ms: int | None = None
    verify: Literal["ok", "failed"] | None = None
    verify_detail: list[str] | None = None
    pruned_at_ms: int | None = None


class BackupRuns(_Out):
    """Backup runs, newest first"""

    items: list[BackupRun]
    limit: int


class BackupRequested(_Out):
    """A backup run was asked for; it appears in the listing when the backups worker starts it"""

    status: Literal["enqueued", "outbox"]
    task: str


# --- devices, carts, offline sync ---------------------------------------------------

class DeviceOut(_Out):
    """The device"""

    id: str
    platform: Literal["android", "ios", "web"]
    app_version: str
    token_hint: str
    created_at_ms: int
    updated_at_ms: int


class Devices(_Out):
    """The signed-in user's devices"""

    items: list[DeviceOut]


class CartLine(_Out):
    sku: str
    name: str
    qty: int
    unit_price_paise: int | None
    price_paise_at_add: int
    line_total_paise: int | None
    in_stock: int
    changes: list[Literal["unavailable", "price_up", "price_down", "out_of_stock", "short"]]


class LastCheckout(_Out):
    version: int
    order_id: str


class CartOut(_Out):
    """The cart, priced now, with what changed since each item was added"""

    id: str
    store_id: str
    version: int
    lines: list[CartLine]
    total_paise: int
    changed: bool
    last_checkout: LastCheckout | None = None


class SyncResult(_Out):
    op_id: str
    kind: str
    status: Literal["pending", "applied", "conflict", "rejected"]
    reason: str | None = None
    result: dict[str, Any] | None = None
    first_sent_in: str | None = None


class SyncBatchOut(_Out):
    """The batch and one result per operation"""

    id: str
    device_id: str
    status: Literal["pending", "applied"]
    received_at_ms: int
    skew_ms: int | None
    applied_at_ms: int | None = None
    results: list[SyncResult]


# --- store analytics ----------------------------------------------------------------

class DaySales(_Out):
    day: str
    sales_paise: int
    orders: int
    sold_orders: int


class HourSales(_Out):
    hour: int
    sales_paise: int
    orders: int


class ProductSales(_Out):
    sku: str
    name: str
    qty: int
    sales_paise: int


class CategorySales(_Out):
    category: str
    qty: int
    sales_paise: int


class MethodShare(_Out):
    orders: int
    share: float


class StoreAnalytics(_Out):
    """The store's sales over the days asked for (local dates, inclusive)"""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    store_id: str
    from_: str = Field(alias="from")
    to: str
    sales_paise: int
    orders: int
    sold_orders: int
    average_basket_paise: int
    orders_by_status: dict[str, int]
    sales_by_day: list[DaySales]
    sales_by_hour: list[HourSales]
    top_products: list[ProductSales]
    top_categories: list[CategorySales]
    customers: int
    repeat_customer_rate: float
    payment_methods: dict[str, MethodShare]
    computed_at_ms: int | None
