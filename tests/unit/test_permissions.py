"""The permission matrix and the resource rules, without servers."""

from __future__ import annotations

import pytest

from kirana.permissions import MATRIX, TWO_FACTOR_REQUIRED, Principal, Role, allowed, can_see_order

ORDER = {"customer_id": "usr_c", "store_id": "store-a", "rider_id": "usr_r"}


def _p(role: Role, user: str = "usr_x", store: str | None = None, mfa: bool = True) -> Principal:
    return Principal(user, role, "ses_1", store, mfa)


def test_unknown_permissions_belong_to_nobody() -> None:
    assert not any(allowed(_p(role), "orders:delete") for role in Role)


def test_roles_that_owe_two_factor_may_only_manage_their_account() -> None:
    for role in TWO_FACTOR_REQUIRED:
        owing = _p(role, mfa=False)
        assert allowed(owing, "account:self")
        assert not any(allowed(owing, perm) for perm in MATRIX if perm != "account:self")


def test_only_customers_create_orders_and_only_ops_and_admins_read_the_audit_log() -> None:
    assert {r for r in Role if allowed(_p(r), "orders:create")} == {Role.CUSTOMER}
    assert {r for r in Role if allowed(_p(r), "audit:read")} == {Role.OPS, Role.ADMIN}
    assert {r for r in Role if allowed(_p(r), "users:manage")} == {Role.ADMIN}


@pytest.mark.parametrize(("who", "sees"), [
    (_p(Role.CUSTOMER, "usr_c"), True),
    (_p(Role.CUSTOMER, "usr_other"), False),
    (_p(Role.STORE_STAFF, store="store-a"), True),
    (_p(Role.STORE_OWNER, store="store-b"), False),
    (_p(Role.STORE_STAFF, store=None), False),
    (_p(Role.RIDER, "usr_r"), True),
    (_p(Role.RIDER, "usr_other"), False),
    (_p(Role.OPS), True),
    (_p(Role.ADMIN), True),
])
def test_who_sees_an_order(who: Principal, sees: bool) -> None:
    assert can_see_order(who, ORDER) is sees
