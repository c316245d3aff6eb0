"""What the task, the ops endpoint, the migrations runner and the CLI call: run, list, verify, prune."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from kirana.backups import backup_root, catalog, dump, manifest, restore, retention
from kirana.clock import now_ms
from kirana.config import Settings, settings

# A `.partial` directory this old belongs to a run that died; prune removes it.
STALE_PARTIAL_MS = 24 * 3600 * 1000


def new_backup_id() -> str:
    """Sortable by time: ``20261128T084853Z-1f2e3d``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run(db: Database, *, by: str, reason: str, cfg: Settings | None = None,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Take a backup of `db`, recording the run in the catalog; returns the manifest."""
    root = backup_root(cfg)
    backup_id = new_backup_id()
    catalog.start(db, backup_id, by=by, reason=reason, path=str(root / backup_id))
    try:
        written = dump.dump(db, root, backup_id, progress=progress)
    except Exception as exc:
        catalog.fail(db, backup_id, f"{type(exc).__name__}: {exc}")
        raise
    catalog.succeed(db, backup_id, written)
    return written


@dataclass(frozen=True)
class OnDisk:
    backup_id: str
    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def started_at_ms(self) -> int:
        return int(self.manifest["started_at_ms"])


def on_disk(cfg: Settings | None = None) -> list[OnDisk]:
    """Complete backups under the backup directory, oldest first."""
    root = backup_root(cfg)
    found: list[OnDisk] = []
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.endswith(".partial") and (path / manifest.MANIFEST).is_file():
            found.append(OnDisk(path.name, path, manifest.read(path)))
    return sorted(found, key=lambda b: (b.started_at_ms, b.backup_id))


def find(backup: str, cfg: Settings | None = None) -> Path:
    """A backup by id (under the backup directory) or by path; "latest" for the newest."""
    if backup == "latest":
        found = on_disk(cfg)
        if not found:
            raise manifest.NotFound(f"no backups in {backup_root(cfg)}")
        return found[-1].path
    path = Path(backup)
    if not path.is_dir():
        path = backup_root(cfg) / backup
    if not (path / manifest.MANIFEST).is_file():
        raise manifest.NotFound(f"no backup {backup!r} (looked in {backup_root(cfg)})")
    return path


@dataclass(frozen=True)
class Verification:
    backup_id: str
    ok: bool
    detail: list[str]


def verify(client: MongoClient, db: Database, backup: str = "latest", *,
           cfg: Settings | None = None) -> Verification:
    """Restore `backup` into a scratch database and compare counts, content and indexes with its manifest."""
    path = find(backup, cfg)
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
    """Delete the backups retention does not keep (and partial ones left by dead runs); returns their ids."""
    cfg = cfg or settings()
    found = on_disk(cfg)
    kept = retention.keep([(b.backup_id, b.started_at_ms) for b in found], daily=cfg.backup_keep_daily,
                          weekly=cfg.backup_keep_weekly)
    removed: list[str] = []
    for backup in found:
        if backup.backup_id not in kept:
            shutil.rmtree(backup.path)
            catalog.pruned(db, backup.backup_id)
            removed.append(backup.backup_id)
    root = backup_root(cfg)
    if root.is_dir():
        for partial in root.glob("*.partial"):
            if now_ms() - partial.stat().st_mtime * 1000 > STALE_PARTIAL_MS:
                shutil.rmtree(partial, ignore_errors=True)
                removed.append(partial.name)
    return removed
