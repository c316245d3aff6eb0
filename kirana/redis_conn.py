"""Redis access for the domain (heartbeats, pub/sub), apart from Celery's own."""

from __future__ import annotations

import os
import threading

import redis

from kirana.config import Settings, settings

_lock = threading.Lock()
_clients: dict[tuple[int, str], redis.Redis] = {}


def client(cfg: Settings | None = None) -> redis.Redis:
    """The process's Redis client; one per pid, as connections must not cross a fork."""
    cfg = cfg or settings()
    key = (os.getpid(), cfg.redis_url)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = redis.Redis.from_url(
                cfg.redis_url,
                socket_timeout=cfg.redis_timeout_s,
                socket_connect_timeout=cfg.redis_timeout_s,
                decode_responses=True,
            )
            _clients[key] = found
        return found
