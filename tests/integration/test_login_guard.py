"""Login lockouts in a real Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from kirana import login_guard


def _fail(r, email: str, address: str, n: int, **limits: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        login_guard.failed(r, email, address, **({"max_account": 3, "max_address": 5, "window_s": 60,
                                                  "lockout_s": 1} | limits))


def test_an_account_locks_after_its_limit_and_unlocks_when_the_lockout_expires(redis_client) -> None:  # type: ignore[no-untyped-def]
    email, address = f"{uuid.uuid4().hex}@example.in", f"10.0.{uuid.uuid4().int % 250}.1"
    _fail(redis_client, email, address, 2)
    login_guard.check(redis_client, email, address)  # two failures: still open

    _fail(redis_client, email, address, 1)

    with pytest.raises(login_guard.LockedOut) as locked:
        login_guard.check(redis_client, email, address)
    assert locked.value.retry_after_s == 1
    time.sleep(1.2)
    login_guard.check(redis_client, email, address)


def test_an_address_locks_after_failures_across_many_accounts(redis_client) -> None:  # type: ignore[no-untyped-def]
    address = f"192.0.2.{uuid.uuid4().int % 250}"
    for _ in range(5):
        _fail(redis_client, f"{uuid.uuid4().hex}@example.in", address, 1, lockout_s=60)

    with pytest.raises(login_guard.LockedOut):
        login_guard.check(redis_client, "someone-new@example.in", address)
    login_guard.check(redis_client, "someone-new@example.in", "198.51.100.7")


def test_a_success_forgets_the_accounts_failures(redis_client) -> None:  # type: ignore[no-untyped-def]
    email, address = f"{uuid.uuid4().hex}@example.in", "203.0.113.9"
    _fail(redis_client, email, address, 2, max_address=10**6)
    login_guard.succeeded(redis_client, email)
    _fail(redis_client, email, address, 2, max_address=10**6)
    login_guard.check(redis_client, email, address)
