"""Login protection: failure counters and temporary lockouts in Redis.

Failures are counted three ways within a window, each with its own bar:

- per (account, address): a low bar (LOGIN_MAX_FAILURES_PAIR, 5). Guessing one
  account's password from one place stops quickly, and it locks only that
  pair: the account's owner, elsewhere, still logs in. Anyone could otherwise
  lock an admin out with five wrong passwords.
- per account: a high bar (LOGIN_MAX_FAILURES_ACCOUNT, 50), for guessing spread
  over many addresses. It locks the account for everyone, which an attacker
  with fifty addresses can still provoke: the price of stopping distributed
  guessing, kept rare by the bar and short by the lockout.
- per address: LOGIN_MAX_FAILURES_ADDRESS (20) across all accounts, for one
  place trying many accounts (credential stuffing).

All are checked before the password is, so a locked login costs no argon2 work
and tells nothing about whether the password was right. The address is the
client's as the API sees it: behind a proxy, set TRUSTED_PROXY_HOPS
(api/__init__.py), or every client is the proxy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

PREFIX = "kirana:login"


class LockedOut(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Limits:
    pair: int
    account: int
    address: int
    window_s: int
    lockout_s: int


def _subject(kind: str, value: str) -> str:
    # Hashed so that emails and addresses do not sit in Redis key names.
    return f"{kind}:{hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]}"


def _subjects(email: str, address: str) -> dict[str, str]:
    return {"pair": _subject("pair", f"{email.strip().lower()}|{address}"), "account": _subject("acct", email),
            "address": _subject("addr", address)}


def check(r: redis.Redis, email: str, address: str) -> None:
    pipe = r.pipeline(transaction=False)
    for subject in _subjects(email, address).values():
        pipe.ttl(f"{PREFIX}:lock:{subject}")
    longest = max(int(t) for t in pipe.execute())
    if longest > 0:
        raise LockedOut(longest)


def failed(r: redis.Redis, email: str, address: str, limits: Limits) -> None:
    """Count a failure three ways (one round trip); lock whichever passed its bar."""
    subjects = _subjects(email, address)
    pipe = r.pipeline()
    for subject in subjects.values():
        pipe.incr(f"{PREFIX}:fail:{subject}")
        pipe.expire(f"{PREFIX}:fail:{subject}", limits.window_s, nx=True)
    counts = pipe.execute()[0::2]
    over = [subject for (kind, subject), count in zip(subjects.items(), counts, strict=True)
            if int(count) >= getattr(limits, kind)]
    if over:
        pipe = r.pipeline()
        for subject in over:
            pipe.set(f"{PREFIX}:lock:{subject}", "1", ex=limits.lockout_s)
            pipe.delete(f"{PREFIX}:fail:{subject}")
        pipe.execute()


def succeeded(r: redis.Redis, email: str, address: str) -> None:
    """The right password from `address`: its pair's and the account's failures are forgotten."""
    subjects = _subjects(email, address)
    r.delete(f"{PREFIX}:fail:{subjects['pair']}", f"{PREFIX}:fail:{subjects['account']}")
