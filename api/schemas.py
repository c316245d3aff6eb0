"""Request schemas: parse the JSON a client sent into domain values, or say what is wrong."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from flask import Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from api.problems import Problem
from kirana import analytics
from kirana.config import settings
from kirana.orders import NewOrder, OrderItem, PaymentMethod

Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
# No ":" in a store id: a product's id is "<store>:<sku>" (kirana.stock.product_id).
StoreId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


V = TypeVar("V")


def capped_and_unique(values: list[V], *, cap: int, key: Callable[[V], object], too_many: str,
                      repeated: str) -> list[V]:
    """`values` if there are at most `cap` of them and no two share a key; else ValueError (a 422 field error)."""
    if len(values) > cap:
        raise ValueError(f"at most {cap} {too_many}")
    keys = [key(value) for value in values]
    if len(set(keys)) != len(keys):
        raise ValueError(repeated)
    return values


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku: Sku
    qty: Annotated[int, Field(gt=0)]

    @field_validator("qty")
    @classmethod
    def _qty_cap(cls, qty: int) -> int:
        cap = settings().max_item_qty
        if qty > cap:
            raise ValueError(f"at most {cap} of one item")
        return qty


class OrderIn(BaseModel):
    """The customer is the token's user, never a field of the body."""

    model_config = ConfigDict(extra="forbid", strict=True)
    store_id: StoreId
    items: Annotated[list[ItemIn], Field(min_length=1)]
    payment_method: Literal["cod", "upi", "card", "netbanking", "token"]
    # The saved card to pay with, when payment_method is "token".
    token_id: Annotated[str, StringConstraints(pattern=r"^token_[A-Za-z0-9]{1,40}$")] | None = None
    # Loyalty points to take off the total; checked and debited while the order is processed.
    redeem_points: Annotated[int, Field(gt=0, le=1_000_000)] | None = None

    @model_validator(mode="after")
    def _token(self) -> OrderIn:
        if (self.payment_method == "token") != (self.token_id is not None):
            raise ValueError("token_id is required with payment_method 'token', and only then")
        return self

    @field_validator("items")
    @classmethod
    def _items(cls, items: list[ItemIn]) -> list[ItemIn]:
        return capped_and_unique(items, cap=settings().max_order_items, key=lambda item: item.sku,
                                 too_many="items in one order",
                                 repeated="each sku may appear once; put the total in qty")

    def to_domain(self, customer_id: str) -> NewOrder:
        return NewOrder(
            customer_id=customer_id,
            store_id=self.store_id,
            items=tuple(OrderItem(i.sku, i.qty) for i in self.items),
            payment_method=PaymentMethod(self.payment_method),
            token_id=self.token_id,
            redeem_points=self.redeem_points or 0,
        )


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "(body)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False)
    ]


def json_body(request: Request) -> Any:
    """The request's JSON body, or a 415/400 problem that says what is wrong."""
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "Unsupported Media Type",
                      f"send the body as application/json, not {request.mimetype or 'nothing'!r}")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Problem(400, "malformed-json", "Malformed JSON", "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, "malformed-json", "Malformed JSON",
                      f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        # 60 KB of "[" fits the size limit and nests past Python's recursion limit.
        raise Problem(400, "malformed-json", "Malformed JSON", "the body nests too deeply") from None


Model = TypeVar("Model", bound=BaseModel)


def parse_body(request: Request, model: type[Model]) -> Model:
    """The JSON body as `model`, or a 4xx problem naming every wrong field."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise Problem(422, "validation-error", "Request body is invalid", "the body must be a JSON object",
                      errors=[{"field": "(body)", "message": "expected an object", "type": "object_type"}])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise Problem(422, "validation-error", "Request body is invalid",
                      f"{len(errors)} field(s) are invalid", errors=errors) from None


def parse_order(request: Request, customer_id: str) -> NewOrder:
    return parse_body(request, OrderIn).to_domain(customer_id)


Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Code = Annotated[str, StringConstraints(min_length=4, max_length=32)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{7,14}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(_Body):
    email: Email
    password: Password
    phone: Phone | None = None


class LoginIn(_Body):
    email: Email
    password: Password
    otp: Code | None = None
    recovery_code: Code | None = None
    sms_code: Code | None = None


class RefreshIn(_Body):
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=512)]


class PasswordChangeIn(_Body):
    current_password: Password
    new_password: Password


class CodeIn(_Body):
    code: Code


class SmsCodeIn(_Body):
    email: Email
    password: Password


class EnrolIn(_Body):
    # Required for roles that must have two-factor: issued by an admin (POST /users/<id>/enrolment-token).
    enrolment_token: Annotated[str, StringConstraints(min_length=8, max_length=128)] | None = None


class RemoveTwoFactorIn(_Body):
    password: Password
    code: Code


class RoleIn(_Body):
    role: Literal["customer", "store_owner", "store_staff", "rider", "ops", "admin"]
    store_id: StoreId | None = None


class _Query(BaseModel):
    # Lax: query values arrive as strings ("20" is the integer 20). An unknown name is a 400, as an
    # unknown body field is a 422: a misspelt filter must not silently return everything.
    model_config = ConfigDict(extra="forbid")


Limit = Annotated[int, Field(ge=1, le=200)]
# Deep offsets cost a scan of everything skipped: past this, filter (since/until, category) instead.
Offset = Annotated[int, Field(ge=0, le=10_000)]
Filter = Annotated[str, StringConstraints(max_length=64)]


class PageQuery(_Query):
    limit: Limit = 50
    offset: Offset = 0


class ProductsQuery(PageQuery):
    category: Filter | None = None
    store_id: Filter | None = None


class OpsPageQuery(_Query):
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    offset: Offset = 0


_FAR = 10**15  # epoch ms far in the future


class AuditQuery(OpsPageQuery):
    actor: Filter | None = None
    action: Filter | None = None
    since: Annotated[int, Field(ge=0, le=_FAR, description="epoch ms, inclusive")] | None = None
    until: Annotated[int, Field(ge=0, le=_FAR, description="epoch ms, exclusive")] | None = None


class DeadLettersQuery(OpsPageQuery):
    task: Filter | None = None
    status: Literal["open", "replayed", "discarded"] | None = None
    order_id: Filter | None = None


Query = TypeVar("Query", bound=_Query)


def parse_query(request: Request, model: type[Query]) -> Query:
    """The query string as `model` (an empty value of a known name counts as absent), or a 400 problem."""
    repeated = sorted(name for name, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise Problem(400, "invalid-query", "Invalid query parameter", f"given more than once: {', '.join(repeated)}",
                      errors=[{"field": name, "message": "give it once", "type": "repeated"} for name in repeated])
    known = {field.alias or name for name, field in model.model_fields.items()}
    raw = {name: value for name, value in request.args.items() if value != "" or name not in known}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        names = ", ".join(sorted({e["field"].split(".")[0] for e in errors}))
        raise Problem(400, "invalid-query", "Invalid query parameter", f"invalid: {names}",
                      errors=errors) from None


class IdempotencyHeaders(BaseModel):
    idempotency_key: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[ -~]+$")] | None,
        Field(alias="Idempotency-Key", description="A retry with the same key answers with the same order"),
    ] = None


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise Problem(400, "invalid-idempotency-key", "Invalid Idempotency-Key",
                      "Idempotency-Key must be 1 to 255 printable characters")
    return key


GatewayId = Annotated[str, StringConstraints(min_length=5, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]


class CheckoutIn(_Body):
    """What Razorpay Checkout hands the app after a payment."""

    razorpay_order_id: GatewayId
    razorpay_payment_id: GatewayId
    razorpay_signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class BulkDeadLettersIn(_Body):
    """A bulk action on the open dead letters that match every given filter."""

    action: Literal["replay", "discard"]
    dry_run: bool = False  # count and sample only
    task: Filter | None = None
    exc_type: Filter | None = None
    queue: Filter | None = None
    failed_from_ms: Annotated[int, Field(ge=0)] | None = None  # last failure at or after (epoch ms)
    failed_until_ms: Annotated[int, Field(ge=0)] | None = None  # last failure before
    per_second: Annotated[float, Field(gt=0, le=1000)] | None = None  # replay pace; DEAD_LETTER_REPLAY_PER_S if absent

    @model_validator(mode="after")
    def _range(self) -> BulkDeadLettersIn:
        if self.failed_from_ms is not None and self.failed_until_ms is not None \
                and self.failed_from_ms >= self.failed_until_ms:
            raise ValueError("failed_from_ms must be before failed_until_ms")
        return self


# --- catalog writes (api/products.py) ---------------------------------------------------------------

Paise = Annotated[int, Field(ge=1, le=10_000_000_00)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]


class ProductIn(_Body):
    store_id: StoreId | None = None  # store roles: their own store by default
    sku: Sku
    name: Label
    brand: Label | None = None
    category: Label | None = None
    unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    price_paise: Paise
    mrp_paise: Paise | None = None
    stock: Annotated[int, Field(ge=0, le=10_000_000)] = 0


class ProductChangeIn(_Body):
    name: Label | None = None
    brand: Label | None = None
    category: Label | None = None
    unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    price_paise: Paise | None = None
    mrp_paise: Paise | None = None

    @model_validator(mode="after")
    def _something(self) -> ProductChangeIn:
        if not self.model_fields_set:
            raise ValueError("change at least one field")
        return self


class StockChangeIn(_Body):
    delta: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]


class SynonymsIn(_Body):
    terms: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=60)]],
                     Field(min_length=2, max_length=50)]


# --- search, loyalty, backups, analytics queries ------------------------------------------------------

MAX_SEARCH_CHARS = 200
Price = Annotated[int, Field(ge=0, le=10**12, description="paise")]


class SuggestQuery(_Query):
    q: Annotated[str, StringConstraints(max_length=MAX_SEARCH_CHARS)] = ""
    limit: Annotated[int, Field(ge=1, le=25)] = 10


class SearchQuery(_Query):
    q: Annotated[str, StringConstraints(max_length=MAX_SEARCH_CHARS)] = ""
    store_id: Filter | None = None
    category: Filter | None = None
    brand: Filter | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    in_stock: bool | None = None
    sort: Literal["relevance", "price_asc", "price_desc", "popularity"] = "relevance"
    page: Annotated[int, Field(ge=1, le=1000)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] = 20


    @field_validator("in_stock", mode="before")
    @classmethod
    def _true_or_false(cls, raw: object) -> object:
        # As documented (docs/errors.md): pydantic alone would also take "1", "yes", "on", "t", ...
        if isinstance(raw, str) and raw.lower() not in ("true", "false"):
            raise ValueError("in_stock must be true or false")
        return raw


class BoardQuery(_Query):
    limit: Annotated[int, Field(ge=1, le=100)] = 10


class BackupsQuery(_Query):
    limit: Annotated[int, Field(ge=1, le=500)] = 50


class AnalyticsQuery(_Query):
    from_: Annotated[dt.date | None, Field(alias="from", description="first local day, YYYY-MM-DD "
                                                                      "(default: 29 days before `to`)")] = None
    to: Annotated[dt.date | None, Field(description="last local day, YYYY-MM-DD (default: today)")] = None
    top: Annotated[int, Field(ge=1, le=100)] = analytics.TOP

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _day(cls, raw: object) -> object:
        # Only a calendar date: pydantic alone would also read "0" or "1700000000" as a Unix time.
        if isinstance(raw, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            raise ValueError("expected a date, YYYY-MM-DD")
        return raw
