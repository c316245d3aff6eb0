"""Backups from a shell: ``python -m kirana.backups run|list|verify|restore|prune``.

    python -m kirana.backups run                       back up MONGO_DB now (progress bar)
    python -m kirana.backups list                      complete backups on disk, oldest first
    python -m kirana.backups verify [BACKUP]           restore into a scratch db, compare (default: latest)
    python -m kirana.backups restore BACKUP --into DB [--drop]
                                                       BACKUP: an id, a path or "latest"; refuses a
                                                       non-empty DB unless --drop
    python -m kirana.backups prune                     keep BACKUP_KEEP_DAILY / BACKUP_KEEP_WEEKLY

Exit status: 0 done, 1 refused or failed (verify: a mismatch), 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from tqdm import tqdm

from kirana import audit, db
from kirana.backups import backup_root, jobs, manifest, restore


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _audit(action: str, target: str, **detail: Any) -> None:
    audit.append(db.database(), audit.new_event(action, actor=None, target=target,
                                                detail={"by": _actor(), **detail}))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _run() -> int:
    database = db.database()
    with tqdm(desc=f"backup {database.name}", unit=" docs", unit_scale=True, file=sys.stderr) as bar:
        written = jobs.run(database, by=_actor(), reason="cli", progress=lambda docs, _bytes: bar.update(docs))
    _audit("backup.completed", written["backup_id"], documents=written["documents"], bytes=written["bytes"])
    print(f"{written['backup_id']}: {written['documents']} documents in {len(written['collections'])} collections, "
          f"{_mb(written['bytes'])}, {written['finished_at_ms'] - written['started_at_ms']} ms "
          f"-> {backup_root() / written['backup_id']}")
    return 0


def _list() -> int:
    found = jobs.on_disk()
    print(f"{len(found)} backup(s) in {backup_root()}")
    for backup in found:
        m = backup.manifest
        print(f"{backup.backup_id}  {m['database']:<16} {m['documents']:>10} docs  {_mb(m['bytes']):>10}  "
              f"{len(m['collections'])} collections  v{m['project_version']}")
    return 0


def _verify(backup: str) -> int:
    result = jobs.verify(db.client(), db.database(), backup)
    _audit("backup.verified", result.backup_id, ok=result.ok)
    if result.ok:
        print(f"{result.backup_id}: restored into a scratch database; counts, content and indexes match")
        return 0
    print(f"{result.backup_id}: verification FAILED", file=sys.stderr)
    for line in result.detail:
        print(f"  {line}", file=sys.stderr)
    return 1


def _restore(backup: str, into: str, drop: bool) -> int:
    path = jobs.find(backup)
    total = manifest.read(path)["documents"]
    target = db.client()[into]
    if not drop and (occupied := restore.non_empty_collections(target)):
        raise restore.TargetNotEmpty(f"database {into} is not empty ({', '.join(occupied[:5])}); "
                                     "restore --drop to overwrite the backup's collections")
    with tqdm(total=total, desc=f"restore into {into}", unit=" docs", unit_scale=True, file=sys.stderr) as bar:
        restored = restore.restore(path, target, drop=drop, progress=bar.update)
    _audit("backup.restored", path.name, into=into, drop=drop, documents=sum(restored.values()))
    print(f"restored {path.name} into {into}: {sum(restored.values())} documents in {len(restored)} collections")
    return 0


def _prune() -> int:
    removed = jobs.prune(db.database())
    print(f"pruned {len(removed)}: {', '.join(removed) or 'nothing'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kirana.backups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    sub.add_parser("list")
    sub.add_parser("verify").add_argument("backup", nargs="?", default="latest")
    restoring = sub.add_parser("restore")
    restoring.add_argument("backup")
    restoring.add_argument("--into", required=True, help="the database to restore into")
    restoring.add_argument("--drop", action="store_true", help="drop the backup's collections in it first")
    sub.add_parser("prune")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run()
        if args.command == "list":
            return _list()
        if args.command == "verify":
            return _verify(args.backup)
        if args.command == "restore":
            return _restore(args.backup, args.into, args.drop)
        return _prune()
    except manifest.BackupError as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
