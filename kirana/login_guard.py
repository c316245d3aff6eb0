"""Login protection: failure counters and temporary lockouts in Redis.

Failures are counted per account and per client address within a window;
past the limit the account (or address) is locked for a while. Both are
checked before the password is, so a locked account costs no argon2 work
and tells nothing about whether the password was right.
"""

from __future__ import annotations

import hashlib

import redis

PREFIX = "kirana:login"


class LockedOut(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def _subject(kind: str, value: str) -> str:
    # Hashed so that emails and addresses do not sit in Redis key names.
    return f"{kind}:{hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]}"


def check(r: redis.Redis, email: str, address: str) -> None:
    pipe = r.pipeline(transaction=False)
    for subject in (_subject("acct", email), _subject("addr", address)):
        pipe.ttl(f"{PREFIX}:lock:{subject}")
    ttls = [int(t) for t in pipe.execute()]
    longest = max(ttls)
    if longest > 0:
        raise LockedOut(longest)


def failed(r: redis.Redis, email: str, address: str, *, max_account: int, max_address: int, window_s: int,
           lockout_s: int) -> None:
    """Count a failure; lock the account or address that passed its limit."""
    for subject, limit in ((_subject("acct", email), max_account), (_subject("addr", address), max_address)):
        key = f"{PREFIX}:fail:{subject}"
        pipe = r.pipeline()
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        count = int(pipe.execute()[0])
        if count >= limit:
            r.set(f"{PREFIX}:lock:{subject}", "1", ex=lockout_s)
            r.delete(key)


def succeeded(r: redis.Redis, email: str) -> None:
    r.delete(f"{PREFIX}:fail:{_subject('acct', email)}")
