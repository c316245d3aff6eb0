"""What the task, the ops endpoint, the migrations runner and the CLI call: run, list, verify, prune."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from kirana.backups import backup_root, catalog, dump, manifest, restore, retention, storage
from kirana.config import Settings, settings

# A `.partial` directory (or an S3 backup without its manifest) this old belongs to a run that died;
# prune removes it.
STALE_PARTIAL_MS = 24 * 3600 * 1000


def new_backup_id() -> str:
    """Sortable by time: ``20261128T084853Z-1f2e3d``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run(db: Database, *, by: str, reason: str, cfg: Settings | None = None,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Take a backup of `db`, recording the run in the catalog; returns the manifest.

    Written to the backup directory first, then handed to the store
    (`BACKUP_STORAGE`), which for S3 uploads it, manifest last.
    """
    root = backup_root(cfg)
    store = storage.storage(cfg)
    backup_id = new_backup_id()
    catalog.start(db, backup_id, by=by, reason=reason, path=store.location(backup_id))
    try:
        written = dump.dump(db, root, backup_id, progress=progress)
        try:
            store.keep(root / backup_id)
        except BaseException:
            # A backup the store did not take is no backup: do not let staged copies fill the disk.
            if isinstance(store, storage.S3Storage):
                shutil.rmtree(root / backup_id, ignore_errors=True)
            raise
    except Exception as exc:
        catalog.fail(db, backup_id, f"{type(exc).__name__}: {exc}")
        raise
    catalog.succeed(db, backup_id, written)
    return written


def stored(cfg: Settings | None = None) -> list[storage.Stored]:
    """Complete backups in the store, oldest first."""
    return storage.storage(cfg).backups()


def find(backup: str, cfg: Settings | None = None) -> Path:
    """A backup in the backup directory by id or by path; "latest" for the newest (local storage)."""
    if backup == "latest":
        found = storage.LocalStorage(backup_root(cfg)).backups()
        if not found:
            raise manifest.NotFound(f"no backups in {backup_root(cfg)}")
        return Path(found[-1].location)
    path = Path(backup)
    if not path.is_dir():
        path = backup_root(cfg) / backup
    if not (path / manifest.MANIFEST).is_file():
        raise manifest.NotFound(f"no backup {backup!r} (looked in {backup_root(cfg)})")
    return path


@contextmanager
def fetched(backup: str, cfg: Settings | None = None) -> Iterator[Path]:
    """A local directory holding `backup` (an id, "latest", or a backup directory's path).

    From S3 it is downloaded into a scratch directory, removed on exit.
    """
    store = storage.storage(cfg)
    if Path(backup).is_dir() and (Path(backup) / manifest.MANIFEST).is_file():
        yield Path(backup)
        return
    if backup == "latest":
        found = store.backups()
        if not found:
            raise manifest.NotFound(f"no backups in {store}")
        backup = found[-1].backup_id
    with store.fetch(backup) as path:
        yield path


@dataclass(frozen=True)
class Verification:
    backup_id: str
    ok: bool
    detail: list[str]


def verify(client: MongoClient, db: Database, backup: str = "latest", *,
           cfg: Settings | None = None) -> Verification:
    """Restore `backup` into a scratch database and compare counts, content and indexes with its manifest."""
    with fetched(backup, cfg) as path:
        return _verify(client, db, path)


def _verify(client: MongoClient, db: Database, path: Path) -> Verification:
    written = manifest.read(path)
    scratch_name = f"{db.name}_verify_{secrets.token_hex(4)}"
    detail: list[str] = []
    try:
        scratch = client[scratch_name]
        restore.restore(path, scratch)
        for entry in written["collections"]:
            name = entry["name"]
            count, digest = restore.content_sha256(scratch, name)
            if count != entry["documents"]:
                detail.append(f"{name}: {count} documents restored, manifest says {entry['documents']}")
            elif digest != entry["content_sha256"]:
                detail.append(f"{name}: restored content differs from the dump (SHA-256)")
            wanted = _keys(restore.read_metadata(path / entry["metadata"]["file"])["indexes"])
            have = _keys([dict(spec) for spec in scratch[name].list_indexes()])
            if wanted != have:
                detail.append(f"{name}: indexes {sorted(have)} after restore, dump had {sorted(wanted)}")
    except manifest.BackupError as exc:
        detail.append(str(exc))
    finally:
        client.drop_database(scratch_name)
    result = Verification(written["backup_id"], not detail, detail)
    catalog.verified(db, result.backup_id, ok=result.ok, detail=detail)
    return result


def _keys(specs: list[dict[str, Any]]) -> set[tuple[tuple[tuple[str, int], ...], bool]]:
    return {(tuple((k, int(v)) for k, v in dict(s["key"]).items()), bool(s.get("unique", False))) for s in specs}


def prune(db: Database, cfg: Settings | None = None) -> list[str]:
    """Delete the backups retention does not keep (and what dead runs left); returns their ids."""
    cfg = cfg or settings()
    store = storage.storage(cfg)
    found = store.backups()
    kept = retention.keep([(b.backup_id, b.started_at_ms) for b in found], daily=cfg.backup_keep_daily,
                          weekly=cfg.backup_keep_weekly)
    removed: list[str] = []
    for backup in found:
        if backup.backup_id not in kept:
            store.delete(backup.backup_id)
            catalog.pruned(db, backup.backup_id)
            removed.append(backup.backup_id)
    removed += store.stale_incomplete(STALE_PARTIAL_MS)
    if isinstance(store, storage.S3Storage):
        # Staging and scratch directories of dead runs, in the backup directory.
        removed += storage.LocalStorage(backup_root(cfg)).stale_incomplete(STALE_PARTIAL_MS)
    return removed
