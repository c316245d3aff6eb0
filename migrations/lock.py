"""The migrations lock: one lease document in `migrations_lock`, so two runners never apply at once.

The lease lives in MongoDB (not Redis) because that is what the runner
changes, and a runner needs nothing else up. It has an owner and an
expiry: a runner that dies frees it when the lease runs out, and a live
runner renews it between steps and batches. Taking it is one atomic write:
an insert (nobody held it) or a `find_one_and_update` whose filter says the
lease has expired.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana.clock import now_ms

LOCK = "migrations_lock"
LOCK_ID = "migrations"
LEASE_MS = 60_000


class LockHeld(Exception):
    def __init__(self, holder: dict | None) -> None:
        who = f"{holder.get('owner')} until {holder.get('expires_at_ms')}" if holder else "someone"
        super().__init__(f"another migration runner holds the lock ({who})")
        self.holder = holder


class LockLost(Exception):
    """Our lease expired and someone else took it: stop before writing anything more."""


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(db: Database, owner: str, lease_ms: int = LEASE_MS) -> bool:
    now = now_ms()
    lease = {"owner": owner, "acquired_at_ms": now, "expires_at_ms": now + lease_ms}
    try:
        db[LOCK].insert_one({"_id": LOCK_ID, **lease})
        return True
    except DuplicateKeyError:
        pass
    taken = db[LOCK].find_one_and_update({"_id": LOCK_ID, "expires_at_ms": {"$lt": now}}, {"$set": lease})
    return taken is not None


def wait_for(db: Database, owner: str, wait_s: float, lease_ms: int = LEASE_MS, poll_s: float = 0.5) -> None:
    """Take the lock, waiting up to `wait_s` for a holder to finish; LockHeld if it does not."""
    deadline = time.monotonic() + wait_s
    while not acquire(db, owner, lease_ms):
        if time.monotonic() >= deadline:
            raise LockHeld(db[LOCK].find_one({"_id": LOCK_ID}))
        time.sleep(poll_s)


def renew(db: Database, owner: str, lease_ms: int = LEASE_MS) -> None:
    done = db[LOCK].update_one({"_id": LOCK_ID, "owner": owner}, {"$set": {"expires_at_ms": now_ms() + lease_ms}})
    if done.matched_count != 1:
        raise LockLost(f"the migrations lease of {owner} was taken over")


def release(db: Database, owner: str) -> None:
    db[LOCK].delete_one({"_id": LOCK_ID, "owner": owner})
