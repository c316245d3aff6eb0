"""Backups in mongodump's on-disk layout, a catalog of runs, restore, verify and retention.

A backup is a directory ``<backup dir>/<backup id>/`` holding

    <db>/<collection>.bson.gz            the documents, concatenated BSON, gzip
    <db>/<collection>.metadata.json.gz   indexes and options, mongodump's extended JSON
    manifest.json                        counts, sizes, SHA-256 of each file, times, project version

so ``mongorestore --gzip --dir <backup dir>/<backup id>`` restores it (it
skips manifest.json with a notice). A backup is written under
``<backup id>.partial`` and renamed when complete, so a half-written one is
never listed or restored.

Modules: `dump` (write), `manifest` (read and check), `restore`, `retention`
(which backups prune keeps), `catalog` (the `backups` collection: one
document per run, read by /metrics), `jobs` (what the task, the endpoint and
the CLI call).
"""

from __future__ import annotations

from pathlib import Path

from kirana.config import Settings, settings

# Collections never dumped (nor counted when restore asks whether a database is
# empty): a migrations lease restored as held would block every runner, and
# the catalog of runs describes the files, not the data (a restored copy would
# show this very run as still running).
SKIPPED = frozenset({"migrations_lock", "backups"})


def backup_root(cfg: Settings | None = None) -> Path:
    cfg = cfg or settings()
    return Path(cfg.backup_dir) if cfg.backup_dir else cfg.data_dir / "backups"
