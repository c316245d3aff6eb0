"""Login lockouts in a real Redis: per (account, address), per account, per address."""

from __future__ import annotations

import time
import uuid

import pytest

from kirana import login_guard

LIMITS = login_guard.Limits(pair=3, account=8, address=5, window_s=60, lockout_s=1)


def _fail(r, email: str, where: str, n: int, **limits: int) -> None:  # type: ignore[no-untyped-def]
    chosen = login_guard.Limits(**{**LIMITS.__dict__, **limits})
    for _ in range(n):
        login_guard.failed(r, email, where, chosen)


def _email() -> str:
    return f"{uuid.uuid4().hex}@example.in"


def test_an_account_and_address_pair_locks_after_its_limit_and_unlocks_when_the_lockout_expires(
        redis_client) -> None:  # type: ignore[no-untyped-def]
    email, address = _email(), f"10.0.{uuid.uuid4().int % 250}.1"
    _fail(redis_client, email, address, 2)
    login_guard.check(redis_client, email, address)  # two failures: still open

    _fail(redis_client, email, address, 1)

    with pytest.raises(login_guard.LockedOut) as locked:
        login_guard.check(redis_client, email, address)
    assert locked.value.retry_after_s == 1
    time.sleep(1.2)
    login_guard.check(redis_client, email, address)


def test_failures_from_one_address_do_not_lock_the_owner_out_from_another(redis_client) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 5: five wrong passwords from anyone used to lock the account for everyone."""
    email = _email()
    _fail(redis_client, email, "203.0.113.66", 3, lockout_s=60)

    with pytest.raises(login_guard.LockedOut):
        login_guard.check(redis_client, email, "203.0.113.66")
    login_guard.check(redis_client, email, "198.51.100.20")  # the owner, elsewhere


def test_guessing_spread_over_many_addresses_locks_the_account_at_its_higher_bar(redis_client) -> None:  # type: ignore[no-untyped-def]
    email = _email()
    for i in range(7):
        _fail(redis_client, email, f"192.0.2.{i}", 1, lockout_s=60)
    login_guard.check(redis_client, email, "198.51.100.20")  # 7 of 8: still open
    _fail(redis_client, email, "192.0.2.99", 1, lockout_s=60)

    with pytest.raises(login_guard.LockedOut):
        login_guard.check(redis_client, email, "198.51.100.20")


def test_an_address_locks_after_failures_across_many_accounts(redis_client) -> None:  # type: ignore[no-untyped-def]
    address = f"192.0.2.{uuid.uuid4().int % 250}"
    for _ in range(5):
        _fail(redis_client, _email(), address, 1, lockout_s=60)

    with pytest.raises(login_guard.LockedOut):
        login_guard.check(redis_client, "someone-new@example.in", address)
    login_guard.check(redis_client, "someone-new@example.in", "198.51.100.7")


def test_a_success_forgets_the_pairs_and_the_accounts_failures(redis_client) -> None:  # type: ignore[no-untyped-def]
    email, address = _email(), "203.0.113.9"
    _fail(redis_client, email, address, 2, address=10**6)
    login_guard.succeeded(redis_client, email, address)
    _fail(redis_client, email, address, 2, address=10**6)
    login_guard.check(redis_client, email, address)
