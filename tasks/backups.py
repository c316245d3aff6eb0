"""backups queue: take a backup (daily by beat, or on demand), verify the latest, prune old ones;
and the other long housekeeping jobs: the daily prune of finished records (bounded storage) and
the paced bulk replay of dead letters."""

from __future__ import annotations

from typing import Any

from kirana import audit, db, dead_letters, retention
from kirana.backups import jobs
from kirana.clock import now_ms
from kirana.config import settings
from tasks import audit as audit_task
from tasks import reliability
from tasks.app import app
from tasks.base import KiranaTask
from tasks.reliability import run_once

# Under the backups queue's visibility timeout (3600 s, tasks/queues.py) less its
# longest retry countdown (300 s), so a long dump is never handed to a second
# worker while the first still runs.
SOFT_LIMIT_S = 2900
HARD_LIMIT_S = 3200


@app.task(name="backups.run", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
@run_once("backups.run", ttl_s=HARD_LIMIT_S + 60)
def run(by: str = "beat", reason: str = "scheduled") -> dict[str, Any]:
    database = db.database()
    try:
        written = jobs.run(database, by=by, reason=reason)
    except Exception as exc:
        audit_task.send(audit.new_event("backup.failed", actor=None, target=None,
                                        detail={"by": by, "error": f"{type(exc).__name__}: {exc}"[:500]}))
        raise
    audit_task.send(audit.new_event("backup.completed", actor=None, target=written["backup_id"],
                                    detail={"by": by, "documents": written["documents"], "bytes": written["bytes"]}))
    return {"backup_id": written["backup_id"], "documents": written["documents"], "bytes": written["bytes"]}


@app.task(name="backups.verify", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
@run_once("backups.verify", ttl_s=HARD_LIMIT_S + 60)
def verify(backup: str = "latest") -> dict[str, Any]:
    result = jobs.verify(db.client(), db.database(), backup)
    audit_task.send(audit.new_event("backup.verified", actor=None, target=result.backup_id,
                                    detail={"ok": result.ok, "problems": result.detail[:10]}))
    return {"backup_id": result.backup_id, "ok": result.ok, "detail": result.detail}


@app.task(name="backups.prune", base=KiranaTask, soft_time_limit=300, time_limit=360)
@run_once("backups.prune", ttl_s=420)
def prune() -> list[str]:
    return jobs.prune(db.database())


@app.task(name="backups.prune_storage", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
@run_once("backups.prune_storage", ttl_s=HARD_LIMIT_S + 60)
def prune_storage() -> dict[str, int]:
    """Finished records past their retention (kirana.retention), in paced batches; audited with the counts."""
    deleted = retention.prune(db.database(), settings(), now_ms=now_ms())
    audit_task.send(audit.new_event("storage.pruned", actor=None, target="retention",
                                    detail={name: n for name, n in deleted.items() if n}))
    return deleted


@app.task(name="backups.replay_dead_letters", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S,
          time_limit=HARD_LIMIT_S)
def replay_dead_letters(selection: dict[str, Any], by: str | None, per_second: float) -> int:
    """A bulk replay asked by ops (api/dead_letters.py), paced; on the housekeeping pool, not a busy one."""
    return reliability.replay_selection(dead_letters.Selection(**selection), by=by, per_second=per_second)
