"""The audit log: an insert-only hash chain that shows tampering.

Every entry carries the hash of the entry before it (`prev_hash`) and its
own `hash`, a sha256 over `prev_hash` and the canonical JSON of the entry
(everything but `hash` and `recorded_at`). Editing an entry breaks its own
hash; deleting or reordering entries breaks the links or leaves a gap in
`seq`; deleting the newest entries is caught by a head document that every
append moves forward and that never moves back.

What it cannot show: someone with write access who rewrites the whole tail
*and* the head consistently. Shipping the head hash somewhere else now and
then (logs, another store) closes that gap; `verify` prints what to compare.

Concurrency without transactions: an entry's `_id` is its zero-padded `seq`,
so of two writers that read the same last entry exactly one insert wins and
the other re-reads and tries again. A unique index on `event_id` makes an
append idempotent, so a redelivered task never adds an event twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import db as collections
from kirana.clock import now_ms, utcnow

AUDIT = "audit_log"
AUDIT_HEAD = "audit_head"

HEAD_ID = "head"
GENESIS_HASH = "0" * 64
# The fields of an event, as new_event makes them and append stores them.
EVENT_FIELDS = ("event_id", "at_ms", "action", "actor", "target", "detail", "ip")
# Stored but outside the hash: the insert time (a datetime, see the subset
# rules) and the hash itself.
UNHASHED = frozenset({"hash", "recorded_at"})

APPEND_TRIES = 50
VERIFY_BATCH = 1000
MAX_QUERY_LIMIT = 500


class AuditError(Exception):
    """Base of the audit errors."""


class InvalidEvent(AuditError, ValueError):
    """An event that cannot be stored as given (a bug in the caller; never retried)."""


class AppendContention(AuditError):
    """Lost the race for the next seq too many times in a row (transient)."""


@dataclass(frozen=True)
class Break:
    """The first place where the chain does not hold."""

    seq: int
    entry_id: str | None
    reason: str


def entry_id(seq: int) -> str:
    return f"{seq:012d}"


# --- events ----------------------------------------------------------------


def _check_plain(value: Any, path: str) -> None:
    """Keep stored data inside the portable subset: string keys without `.`/`$`, no arrays of documents."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "." in key:
                raise InvalidEvent(f"{path}: key {key!r} may not start with '$' or contain '.'")
            _check_plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                raise InvalidEvent(f"{path}[{index}]: arrays of sub-documents are not stored; use a map")
            _check_plain(item, f"{path}[{index}]")


def _plain_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """`detail` as plain JSON data, exactly as it will look after the trip through the broker."""
    if detail is None:
        return {}
    try:
        plain = json.loads(json.dumps(dict(detail), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"detail is not plain JSON data: {exc}") from None
    _check_plain(plain, "detail")
    return plain


def new_event(
    action: str,
    *,
    actor: str | None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """An audit event, ready to be sent as a task argument.

    `actor` is the user id, or None for an anonymous act (a failed login of
    an unknown user: put the attempted email in `detail`).
    """
    event = {
        "event_id": uuid.uuid4().hex,
        "at_ms": now_ms() if at_ms is None else at_ms,
        "action": action,
        "actor": actor,
        "target": target,
        "detail": _plain_detail(detail),
        "ip": ip,
    }
    return _validated(event)


def _validated(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's own fields, checked and normalised; InvalidEvent otherwise."""
    for name in ("event_id", "action"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidEvent(f"{name} must be a non-empty string")
    at_ms = event.get("at_ms")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool):
        raise InvalidEvent("at_ms must be integer epoch milliseconds")
    for name in ("actor", "target", "ip"):
        if event.get(name) is not None and not isinstance(event[name], str):
            raise InvalidEvent(f"{name} must be a string or None")
    return {
        "event_id": event["event_id"],
        "at_ms": int(at_ms),
        "action": event["action"],
        "actor": event.get("actor"),
        "target": event.get("target"),
        "detail": _plain_detail(event.get("detail")),
        "ip": event.get("ip"),
    }


# --- hashing ---------------------------------------------------------------


def canonical_json(entry: Mapping[str, Any]) -> str:
    """The entry's hashed fields as canonical JSON (sorted keys, no spaces, UTF-8 kept)."""
    hashed = {key: value for key, value in entry.items() if key not in UNHASHED}
    return json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """sha256 hex over `prev_hash` + the canonical JSON of the entry without `hash` and `recorded_at`.

    Raises TypeError/ValueError when the entry holds something that is not
    plain JSON data (which a stored entry never does unless edited).
    """
    prev_hash = str(entry.get("prev_hash", ""))
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode("utf-8")).hexdigest()


# --- appending -------------------------------------------------------------


def _last(db: Database) -> dict[str, Any] | None:
    found = db[AUDIT].find({}, {"seq": 1, "hash": 1}).sort("seq", -1).limit(1)
    return next(iter(found), None)


def _advance_head(db: Database, seq: int, hash_: str) -> None:
    """Move the head to (seq, hash) unless it is already there or further on."""
    try:
        db[AUDIT_HEAD].update_one(
            {"_id": HEAD_ID, "seq": {"$lt": seq}},
            {"$set": {"seq": seq, "hash": hash_, "updated_at_ms": now_ms()}},
            upsert=True,
        )
    except DuplicateKeyError:
        # The head exists and is at or past seq: nothing to do.
        return


def _existing(db: Database, event_id: str) -> dict[str, Any] | None:
    found = db[AUDIT].find_one({"event_id": event_id})
    if found is not None and isinstance(found.get("seq"), int) and isinstance(found.get("hash"), str):
        # The writer may have died between its insert and the head update.
        _advance_head(db, int(found["seq"]), found["hash"])
    return found


def append(db: Database, event: Mapping[str, Any]) -> dict[str, Any]:
    """Store `event` as the next entry of the chain and return the stored entry.

    Idempotent per `event_id`: appending an event that is already in the log
    returns the entry it got the first time.
    """
    fields = _validated(event)
    existing = _existing(db, fields["event_id"])
    if existing is not None:
        return existing
    for attempt in range(APPEND_TRIES):
        last = _last(db)
        seq = 1 if last is None else int(last["seq"]) + 1
        entry: dict[str, Any] = {
            "_id": entry_id(seq),
            "seq": seq,
            **fields,
            "prev_hash": GENESIS_HASH if last is None else str(last["hash"]),
        }
        entry["hash"] = entry_hash(entry)
        entry["recorded_at"] = utcnow()
        try:
            db[AUDIT].insert_one(entry)
        except DuplicateKeyError:
            # Either another writer took this seq, or it appended this very
            # event (the event_id index): the second case is done already.
            existing = _existing(db, fields["event_id"])
            if existing is not None:
                return existing
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            continue
        _advance_head(db, seq, entry["hash"])
        return entry
    raise AppendContention(f"could not append event {fields['event_id']} after {APPEND_TRIES} tries")


# --- verifying -------------------------------------------------------------


@dataclass
class _Walk:
    """Where a verification has got to: the last good entry and how many were checked."""

    seq: int = 0
    hash: str = GENESIS_HASH
    checked: int = 0


def _check_entry(entry: Mapping[str, Any], walk: _Walk) -> Break | None:
    seq = entry.get("seq")
    expected = walk.seq + 1
    id_ = str(entry.get("_id"))
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < expected:
        return Break(expected, id_, "unexpected entry (inserted or seq changed)")
    if seq > expected:
        return Break(expected, None, f"entry {expected} missing (deleted)")
    if entry.get("prev_hash") != walk.hash:
        return Break(seq, id_, "chain broken: reordered or previous entry changed")
    try:
        recomputed: str | None = entry_hash(entry)
    except (TypeError, ValueError):
        recomputed = None
    if entry.get("hash") != recomputed:
        return Break(seq, id_, "entry edited")
    return None


def _walk_on(db: Database, walk: _Walk) -> Break | None:
    """Check every entry after `walk.seq`, in seq order, in bounded batches."""
    while True:
        batch = list(db[AUDIT].find({"seq": {"$gt": walk.seq}}).sort("seq", 1).limit(VERIFY_BATCH))
        if not batch:
            return None
        for entry in batch:
            broken = _check_entry(entry, walk)
            if broken is not None:
                return broken
            walk.seq, walk.hash = int(entry["seq"]), str(entry["hash"])
            walk.checked += 1


def _check_head(db: Database, head: Mapping[str, Any] | None, walk: _Walk) -> Break | None:
    """The head against a fully walked chain; a head behind the end is a writer between insert and head update."""
    if head is None:
        if walk.seq == 0:
            return None
        return Break(walk.seq, entry_id(walk.seq), "head missing: cannot tell whether newest entries were deleted")
    head_seq, head_hash = head.get("seq"), head.get("hash")
    if not isinstance(head_seq, int) or isinstance(head_seq, bool) or not isinstance(head_hash, str):
        return Break(walk.seq, None, "head corrupted")
    if head_seq > walk.seq:
        return Break(
            walk.seq + 1, None, f"newest entries deleted: the head records entry {head_seq}, the log ends at {walk.seq}"
        )
    if head_seq == walk.seq:
        at_head = walk.hash
    else:
        found = db[AUDIT].find_one({"_id": entry_id(head_seq)}, {"hash": 1})
        at_head = None if found is None else found.get("hash")
    if at_head != head_hash:
        return Break(head_seq, entry_id(head_seq), "newest entries deleted and rewritten: the head's hash differs")
    return None


def verify_report(db: Database) -> tuple[int, Break | None]:
    """(entries checked, the first break or None when the chain is intact)."""
    walk = _Walk()
    while True:
        before = walk.seq
        broken = _walk_on(db, walk)
        if broken is not None:
            return walk.checked, broken
        head = db[AUDIT_HEAD].find_one({"_id": HEAD_ID})
        head_seq = head.get("seq") if head is not None else None
        # A head beyond the end may be entries appended while we walked:
        # walk on, and call them deleted only once no more turn up.
        if isinstance(head_seq, int) and head_seq > walk.seq and walk.seq > before:
            continue
        return walk.checked, _check_head(db, head, walk)


def verify(db: Database) -> Break | None:
    """The first break in the chain, or None when it is intact."""
    return verify_report(db)[1]


# --- reading ---------------------------------------------------------------


def query(
    db: Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Entries newest first, and how many match in all.

    `since_ms` is inclusive and `until_ms` exclusive; None means no filter.
    """
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    if offset < 0:
        raise ValueError("offset must not be negative")
    filter_: dict[str, Any] = {}
    if actor is not None:
        filter_["actor"] = actor
    if action is not None:
        filter_["action"] = action
    at: dict[str, int] = {}
    if since_ms is not None:
        at["$gte"] = since_ms
    if until_ms is not None:
        at["$lt"] = until_ms
    if at:
        filter_["at_ms"] = at
    found = db[AUDIT].find(filter_).sort("seq", -1).skip(offset).limit(limit)
    entries = [{key: value for key, value in entry.items() if key not in ("_id", "recorded_at")} for entry in found]
    return entries, db[AUDIT].count_documents(filter_)


# --- command line ----------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, database: Database | None = None) -> int:
    """`python -m kirana.audit verify`: 0 when the chain is intact, 1 when it is broken."""
    parser = argparse.ArgumentParser(prog="python -m kirana.audit", description="Kirana's audit log.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="walk the hash chain and report the first break")
    parser.parse_args(argv)
    target = database if database is not None else collections.database()
    checked, broken = verify_report(target)
    if broken is None:
        print(f"audit chain intact: {checked} entries")
        head = target[AUDIT_HEAD].find_one({"_id": HEAD_ID})
        if head is not None:
            print(f"head: entry {head.get('seq')} hash {head.get('hash')}")
        return 0
    print(f"audit chain BROKEN at entry {broken.seq} ({broken.entry_id or 'missing'}): {broken.reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
