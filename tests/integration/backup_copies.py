"""Backups made by copying one and re-dating its manifest: a month of them in a moment, for retention tests."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from kirana.backups import manifest


def dated_copy(template: Path, root: Path, backup_id: str, day: int, hour: int) -> Path:
    """A copy of the backup folder `template` as `root/backup_id`, as if started on 2026-11-`day` at `hour`:00 UTC."""
    target = root / backup_id
    shutil.copytree(template, target)
    m = manifest.read(target)
    m["started_at_ms"] = int(dt.datetime(2026, 11, day, hour, tzinfo=dt.UTC).timestamp() * 1000)
    m["backup_id"] = backup_id
    manifest.write(target, m)
    return target
