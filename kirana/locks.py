"""Run-once locks for jobs that must not overlap: a Redis lock with a TTL and a fencing token.

`acquire` sets `kirana:lock:<name>` only if nobody holds it, with a TTL so a
crashed holder frees it, and hands out a fencing token that grows with every
acquisition. Work that outlives its lock is caught by the token: a write
guarded by "my token is the newest" fails for a stale holder
(`record_run` does that for the job's own bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana.clock import now_ms

JOBS = "job_runs"

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Lock:
    name: str
    token: int


def acquire(r: redis.Redis, name: str, ttl_s: int) -> Lock | None:
    token = int(r.incr(f"kirana:fence:{name}"))
    if r.set(f"kirana:lock:{name}", str(token), nx=True, ex=ttl_s):
        return Lock(name, token)
    return None


def holder(r: redis.Redis, name: str) -> int | None:
    held = r.get(f"kirana:lock:{name}")
    return int(held) if held is not None else None


def release(r: redis.Redis, lock: Lock) -> bool:
    """Free the lock if it is still ours (it may have expired and passed on)."""
    return bool(r.eval(_RELEASE, 1, f"kirana:lock:{lock.name}", str(lock.token)))


def record_run(db: Database, lock: Lock, outcome: str) -> bool:
    """Note the job's completion, unless a newer holder (a higher token) already did."""
    done = db[JOBS].update_one(
        {"_id": lock.name, "fence": {"$lt": lock.token}},
        {"$set": {"fence": lock.token, "outcome": outcome, "finished_at_ms": now_ms()}},
    )
    if done.matched_count:
        return True
    if db[JOBS].find_one({"_id": lock.name}) is None:
        try:
            db[JOBS].insert_one({"_id": lock.name, "fence": lock.token, "outcome": outcome,
                                 "finished_at_ms": now_ms()})
        except DuplicateKeyError:  # a newer run recorded first
            return False
        return True
    return False


def last_runs(db: Database) -> dict[str, int]:
    """Each run-once job's last completion, epoch ms, by job name (one document per job)."""
    return {doc["_id"]: int(doc["finished_at_ms"]) for doc in db[JOBS].find({"outcome": "done"})
            if doc.get("finished_at_ms")}
