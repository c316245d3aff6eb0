"""Fixed-window request limits in Redis: how many times one key may do one thing per window."""

from __future__ import annotations

import hashlib
from typing import cast

import redis

PREFIX = "kirana:throttle"

# One atomic step: count this request and start the window on the first one
# (or on a key that somehow lost its expiry). Returns [count, ttl].
_COUNT_IN_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return {n, redis.call('TTL', KEYS[1])}
"""


def count_in_window(r: redis.Redis, key: str, window_s: int) -> tuple[int, int]:
    """Count one more at `key` in its `window_s` window: (the count so far, seconds the window has left)."""
    count, ttl = cast(list[int], r.eval(_COUNT_IN_WINDOW, 1, key, window_s))
    return int(count), int(ttl)


def hit(r: redis.Redis, name: str, key: str, *, limit: int, window_s: int) -> int:
    """Count one `name` by `key`: 0 while within `limit` per window, else the seconds until it reopens.

    One round trip. The key is hashed so that addresses and emails do not sit in key names.
    """
    count, ttl = count_in_window(r, f"{PREFIX}:{name}:{hashlib.sha256(key.encode()).hexdigest()[:32]}", window_s)
    return 0 if count <= limit else max(1, ttl)
