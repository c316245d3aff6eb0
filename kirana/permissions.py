"""Who may do what: the roles and the one permission matrix.

Every route declares one permission from `MATRIX` (or is declared public);
a route without a declaration is refused. Resource-level rules (whose order
a user may see) are the functions at the bottom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    CUSTOMER = "customer"
    STORE_OWNER = "store_owner"
    STORE_STAFF = "store_staff"
    RIDER = "rider"
    OPS = "ops"
    ADMIN = "admin"


EVERYONE = frozenset(Role)
STORE_ROLES = frozenset({Role.STORE_OWNER, Role.STORE_STAFF})
# Roles that must pass two-factor before they can use anything but enrolment.
TWO_FACTOR_REQUIRED = frozenset({Role.OPS, Role.ADMIN, Role.STORE_OWNER})

# resource:action -> roles allowed. The one place access is decided.
MATRIX: Mapping[str, frozenset[Role]] = {
    "orders:create": frozenset({Role.CUSTOMER}),
    "orders:read": EVERYONE,  # narrowed per order by can_see_order
    "orders:cancel": frozenset({Role.CUSTOMER, Role.OPS, Role.ADMIN}),  # customers: their own
    "payments:pay": frozenset({Role.CUSTOMER}),  # checkout, retries, saved methods
    "products:read": EVERYONE,
    "account:self": EVERYONE,  # own session, password and two-factor
    "audit:read": frozenset({Role.OPS, Role.ADMIN}),
    "dead_letters:manage": frozenset({Role.OPS, Role.ADMIN}),
    "deliveries:assign": frozenset({Role.STORE_OWNER, Role.STORE_STAFF, Role.OPS, Role.ADMIN}),
    "deliveries:ride": frozenset({Role.RIDER}),
    "notifications:read": EVERYONE,  # one's own inbox and preferences
    "users:manage": frozenset({Role.ADMIN}),
    "backups:manage": frozenset({Role.OPS, Role.ADMIN}),
    # Mobile backend: one's own devices, cart and offline sync; a store's analytics (narrowed by can_see_store).
    "devices:manage": EVERYONE,
    "cart:manage": frozenset({Role.CUSTOMER}),
    "sync:submit": frozenset({Role.CUSTOMER, Role.RIDER}),
    "analytics:read": frozenset({Role.STORE_OWNER, Role.STORE_STAFF, Role.OPS, Role.ADMIN}),
    "catalog:write": frozenset({Role.STORE_OWNER, Role.STORE_STAFF, Role.ADMIN}),  # store roles: their store
    "search:manage": frozenset({Role.OPS, Role.ADMIN}),
    "loyalty:read": frozenset({Role.CUSTOMER}),  # one's own points
    "leaderboards:read": EVERYONE,
}

# What a role that still owes two-factor may do: enrol, and leave.
BEFORE_TWO_FACTOR = frozenset({"account:self"})


@dataclass(frozen=True)
class Principal:
    """The user behind a request, as its access token says."""

    user_id: str
    role: Role
    session_id: str
    store_id: str | None = None
    two_factor: bool = False


def allowed(principal: Principal, permission: str) -> bool:
    if permission not in MATRIX:
        return False  # an undeclared permission is nobody's
    if principal.role not in MATRIX[permission]:
        return False
    return not (needs_two_factor(principal) and permission not in BEFORE_TWO_FACTOR)


def needs_two_factor(principal: Principal) -> bool:
    return principal.role in TWO_FACTOR_REQUIRED and not principal.two_factor


def can_see_order(principal: Principal, order: Mapping[str, Any]) -> bool:
    """A customer sees their own orders, store roles their store's, riders their deliveries."""
    if principal.role in {Role.OPS, Role.ADMIN}:
        return True
    if principal.role == Role.CUSTOMER:
        return order.get("customer_id") == principal.user_id
    if principal.role in STORE_ROLES:
        return principal.store_id is not None and order.get("store_id") == principal.store_id
    if principal.role == Role.RIDER:
        return order.get("rider_id") == principal.user_id
    return False


def can_see_store(principal: Principal, store_id: str) -> bool:
    """Ops and admin see every store; store roles only their own."""
    if principal.role in {Role.OPS, Role.ADMIN}:
        return True
    return principal.role in STORE_ROLES and principal.store_id is not None and principal.store_id == store_id


def can_write_catalog(principal: Principal, store_id: str) -> bool:
    """Store roles change their own store's shelf; admin any store's."""
    if principal.role == Role.ADMIN:
        return True
    return principal.role in STORE_ROLES and principal.store_id is not None and principal.store_id == store_id
