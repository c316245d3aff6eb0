"""Fixed-window request limits in Redis: how many times one key may do one thing per window."""

from __future__ import annotations

import hashlib

import redis

PREFIX = "kirana:throttle"


def hit(r: redis.Redis, name: str, key: str, *, limit: int, window_s: int) -> int:
    """Count one `name` by `key`: 0 while within `limit` per window, else the seconds until it reopens.

    One round trip. The key is hashed so that addresses and emails do not sit in key names.
    """
    counter = f"{PREFIX}:{name}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    pipe = r.pipeline()
    pipe.incr(counter)
    pipe.expire(counter, window_s, nx=True)
    pipe.ttl(counter)
    count, _, ttl = pipe.execute()
    return 0 if int(count) <= limit else max(1, int(ttl))
