"""The `backups` collection: one document per backup run, what /metrics and the ops endpoint read.

The files are the backup; this is the record of runs, so that any API
process can tell when the last backup succeeded without seeing the disk of
the worker that wrote it. Timestamps written by updates are epoch ms.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from kirana.clock import now_ms, utcnow

BACKUPS = "backups"

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
PRUNED = "pruned"


def start(db: Database, backup_id: str, *, by: str, reason: str, path: str) -> None:
    db[BACKUPS].insert_one({"_id": backup_id, "status": RUNNING, "by": by, "reason": reason, "path": path,
                            "started_at": utcnow(), "started_at_ms": now_ms(), "updated_at_ms": now_ms()})


def succeed(db: Database, backup_id: str, manifest: dict[str, Any]) -> None:
    finished = now_ms()
    db[BACKUPS].update_one({"_id": backup_id, "status": RUNNING}, {"$set": {
        "status": SUCCEEDED,
        "finished_at_ms": finished,
        "duration_ms": manifest["finished_at_ms"] - manifest["started_at_ms"],
        "documents": manifest["documents"],
        "bytes": manifest["bytes"],
        "collections": len(manifest["collections"]),
        "updated_at_ms": finished,
    }})


def fail(db: Database, backup_id: str, error: str) -> None:
    at = now_ms()
    db[BACKUPS].update_one({"_id": backup_id, "status": RUNNING}, {"$set": {
        "status": FAILED, "finished_at_ms": at, "error": error[:2000], "updated_at_ms": at}})


def verified(db: Database, backup_id: str, *, ok: bool, detail: list[str]) -> None:
    at = now_ms()
    db[BACKUPS].update_one({"_id": backup_id}, {"$set": {
        # A string, not a bool: nx-27017 was seen to store a $set False as 0.
        "verified_at_ms": at, "verify": "ok" if ok else "failed", "verify_detail": detail[:50], "updated_at_ms": at}})


def pruned(db: Database, backup_id: str) -> None:
    at = now_ms()
    db[BACKUPS].update_one({"_id": backup_id}, {"$set": {"status": PRUNED, "pruned_at_ms": at,
                                                         "updated_at_ms": at}})


def last(db: Database, status: str) -> dict[str, Any] | None:
    return db[BACKUPS].find_one({"status": status}, sort=[("finished_at_ms", -1)])


def recent(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return [view(doc) for doc in db[BACKUPS].find({}).sort("started_at_ms", -1).limit(limit)]


def view(doc: dict[str, Any]) -> dict[str, Any]:
    """A run as the API shows it (no datetimes, `id` instead of `_id`)."""
    shown = {k: v for k, v in doc.items() if k not in {"_id", "started_at"}}
    return {"id": doc["_id"], **shown}
