"""A backup taken on demand via the ops endpoint, written by a real backups worker, seen in /metrics and audit."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import bson
import pytest
import requests

from kirana.backups import backup_root, manifest
from kirana.permissions import Role

pytestmark = pytest.mark.e2e


def test_an_ops_user_takes_a_backup_that_a_backups_worker_writes(stack) -> None:  # type: ignore[no-untyped-def]
    ops = stack.user(Role.OPS)
    started = time.time()

    taken = ops.http.post(ops.url("/api/v1/backups"), timeout=10)
    assert taken.status_code == 202 and taken.json() == {"status": "enqueued", "task": "backups.run"}
    deadline = time.monotonic() + 90
    while True:
        items = ops.http.get(ops.url("/api/v1/backups"), timeout=10).json()["items"]
        # A run that finishes after the request: ours, or (run-once) one already running that ours deferred to.
        done = [b for b in items if b["status"] == "succeeded" and b["finished_at_ms"] >= started * 1000]
        if done:
            break
        assert time.monotonic() < deadline, items
        time.sleep(0.5)

    run = done[0]
    path = backup_root() / run["id"]
    assert manifest.check(path) == []
    with gzip.open(path / stack.db.name / "products.bson.gz", "rb") as f:
        assert sum(1 for _ in bson.decode_file_iter(f)) == stack.db["products"].count_documents({})  # type: ignore[arg-type]
    metrics = requests.get(stack.url("/metrics"), timeout=10).text
    line = next(m for m in metrics.splitlines() if m.startswith("kirana_backup_last_success_timestamp_seconds "))
    assert float(line.split()[1]) >= started - 1
    assert "kirana_backup_last_size_bytes " in metrics and "kirana_backup_last_duration_seconds " in metrics
    deadline = time.monotonic() + 30
    while stack.db["audit_log"].find_one({"action": "backup.completed", "target": run["id"]}) is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert Path(run["path"]) == path
