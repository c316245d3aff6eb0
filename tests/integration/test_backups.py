"""Backups against a real server: dump -> drop -> restore, the manifest catches damage, retention, metrics."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bson
import pytest
from bson import json_util

from kirana import db as collections
from kirana.backups import catalog, jobs, manifest, restore
from kirana.config import ROOT, Settings, settings
from tests.integration.backup_copies import dated_copy


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return dataclasses.replace(settings(), backup_dir=str(tmp_path / "backups"), backup_keep_daily=2,
                               backup_keep_weekly=1)


def _populate(database) -> None:  # type: ignore[no-untyped-def]
    at = dt.datetime(2026, 11, 28, 8, 30, 15, 123000, tzinfo=dt.UTC)
    database["orders"].insert_many([
        {"_id": f"ord_{i:05d}", "idempotency_key": f"auto:ord_{i:05d}", "status": "confirmed",
         "customer_id": f"usr_{i % 7}", "store_id": "store_1", "created_at_ms": 1_700_000_000_000 + i,
         "total_paise": 1999 * i, "lines": [{"sku": "ATTA-5KG", "qty": i % 3 + 1}],
         "holds": {"x": {"q": 1}}, "created_at": at, "note": None, "ratio": 0.25 * i}
        for i in range(2500)
    ])
    database["users"].insert_many([{"_id": f"usr_{i}", "email": f"u{i}@example.in", "role": "customer"}
                                   for i in range(7)])
    database.create_collection("empty_shelf")  # empty collections come back too


def _snapshot(database) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    raw = database.with_options(codec_options=restore.RAW)
    return {name: [doc.raw for doc in raw[name].find({}).sort("_id", 1)]
            for name in sorted(database.list_collection_names()) if name != "backups"}


def test_backup_drop_restore_gives_identical_documents_and_indexes(database, cfg: Settings) -> None:
    _populate(database)
    before = _snapshot(database)
    indexes_before = {name: collections.index_keys(database, name) for name in before}

    written = jobs.run(database, by="test", reason="test", cfg=cfg)
    for name in before:
        database.drop_collection(name)
    restored = restore.restore(jobs.find(written["backup_id"], cfg), database)

    assert restored["orders"] == 2500 and restored["users"] == 7 and restored["empty_shelf"] == 0
    assert _snapshot(database) == before
    assert {name: collections.index_keys(database, name) for name in before} == indexes_before
    assert catalog.last(database, catalog.SUCCEEDED)["_id"] == written["backup_id"]


def test_the_files_are_in_mongodumps_layout_and_parse_with_decode_file_iter(database, cfg: Settings) -> None:
    _populate(database)
    written = jobs.run(database, by="test", reason="test", cfg=cfg)
    folder = Path(cfg.backup_dir) / written["backup_id"] / database.name

    with gzip.open(folder / "orders.bson.gz", "rb") as f:
        docs = list(bson.decode_file_iter(f))  # type: ignore[arg-type]
    meta = json.loads(gzip.decompress((folder / "orders.metadata.json.gz").read_bytes()))

    assert [d["_id"] for d in docs] == sorted(f"ord_{i:05d}" for i in range(2500))
    assert docs[3]["created_at"] == dt.datetime(2026, 11, 28, 8, 30, 15, 123000)
    assert meta["collectionName"] == "orders" and meta["type"] == "collection" and meta["options"] == {}
    # Canonical extended JSON, as mongodump writes it.
    assert {"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_"} in meta["indexes"]
    keys = [list(json_util.loads(json.dumps(spec["key"])).items()) for spec in meta["indexes"]]
    assert [("idempotency_key", 1)] in keys
    assert any(spec.get("unique") is True for spec in meta["indexes"])
    entry = next(e for e in written["collections"] if e["name"] == "orders")
    assert entry["documents"] == 2500 and entry["data"]["file"] == f"{database.name}/orders.bson.gz"
    assert manifest.read(folder.parent)["project_version"] == written["project_version"]


def test_a_truncated_or_altered_file_is_caught_by_the_manifest(database, cfg: Settings) -> None:
    _populate(database)
    path = jobs.find(jobs.run(database, by="test", reason="test", cfg=cfg)["backup_id"], cfg)
    assert manifest.check(path) == []
    data = path / database.name / "orders.bson.gz"
    original = data.read_bytes()

    data.write_bytes(original[:-100])
    truncated = manifest.check(path)
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    data.write_bytes(bytes(flipped))
    altered = manifest.check(path)
    (path / database.name / "stray.bson.gz").write_bytes(b"")

    assert [p.file for p in truncated] == [f"{database.name}/orders.bson.gz"] and "bytes" in truncated[0].reason
    assert "SHA-256" in altered[0].reason
    assert any(p.reason == "not in the manifest" for p in manifest.check(path))
    target = database.client[f"{database.name}_r"]
    with pytest.raises(restore.Damaged):
        restore.restore(path, target)
    assert target.list_collection_names() == []


def test_restore_refuses_a_non_empty_database_unless_told_to_drop(database, cfg: Settings) -> None:
    _populate(database)
    path = jobs.find(jobs.run(database, by="test", reason="test", cfg=cfg)["backup_id"], cfg)
    database["orders"].update_one({"_id": "ord_00001"}, {"$set": {"status": "cancelled"}})

    with pytest.raises(restore.TargetNotEmpty):
        restore.restore(path, database)
    restore.restore(path, database, drop=True)

    assert database["orders"].find_one({"_id": "ord_00001"})["status"] == "confirmed"
    assert database["orders"].count_documents({}) == 2500


def test_verify_restores_the_latest_into_a_scratch_database_and_compares(database, cfg: Settings) -> None:
    _populate(database)
    jobs.run(database, by="test", reason="test", cfg=cfg)
    newest = jobs.run(database, by="test", reason="test", cfg=cfg)

    good = jobs.verify(database.client, database, cfg=cfg)
    # Damage the newest backup consistently (file and manifest agree) but unlike the dump: verify must notice.
    path = jobs.find(newest["backup_id"], cfg)
    written = manifest.read(path)
    written["collections"][[e["name"] for e in written["collections"]].index("orders")]["documents"] = 2499
    manifest.write(path, written)
    bad = jobs.verify(database.client, database, cfg=cfg)

    assert good.ok and good.backup_id == newest["backup_id"]
    assert not bad.ok and "orders: 2500 documents restored, manifest says 2499" in bad.detail
    assert not [n for n in database.client.list_database_names() if n.startswith(f"{database.name}_verify_")]
    assert database["backups"].find_one({"_id": newest["backup_id"]})["verify"] == "failed"


def test_prune_keeps_exactly_what_retention_says(database, cfg: Settings) -> None:
    database["orders"].insert_one({"_id": "ord_1", "idempotency_key": "auto:ord_1"})
    template = jobs.find(jobs.run(database, by="test", reason="test", cfg=cfg)["backup_id"], cfg)
    root = Path(cfg.backup_dir)
    # Backups of Nov 10..28 (a Saturday), two a day, made by copying one and dating its manifest.
    made = []
    for day in range(10, 29):
        for hour in (1, 13):
            backup_id = f"202611{day:02d}T{hour:02d}0000Z-test"
            dated_copy(template, root, backup_id, day, hour)
            made.append(backup_id)
    shutil.rmtree(template)

    removed = jobs.prune(database, cfg)

    # daily=2: the 28th and 27th; weekly=1: the week of the 23rd, whose newest is the 28th.
    assert sorted(b.backup_id for b in jobs.stored(cfg)) == ["20261127T130000Z-test", "20261128T130000Z-test"]
    assert sorted(removed) == sorted(set(made) - {"20261127T130000Z-test", "20261128T130000Z-test"})


def _cli(database, backup_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "MONGO_DB": database.name, "BACKUP_DIR": str(backup_dir)}
    return subprocess.run([sys.executable, "-m", "kirana.backups", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_runs_lists_verifies_restores_and_audits(database, tmp_path: Path) -> None:
    _populate(database)
    copy = database.client[f"{database.name}_copy"]
    try:
        ran = _cli(database, tmp_path, "run")
        backup_id = ran.stdout.split(":")[0]
        listed = _cli(database, tmp_path, "list")
        verified = _cli(database, tmp_path, "verify")
        refused = _cli(database, tmp_path, "restore", "latest", "--into", database.name)
        restored = _cli(database, tmp_path, "restore", backup_id, "--into", copy.name)

        assert ran.returncode == 0 and "2507 documents" in ran.stdout, ran.stderr
        assert listed.returncode == 0 and backup_id in listed.stdout
        assert verified.returncode == 0 and "match" in verified.stdout
        assert refused.returncode == 1 and "not empty" in refused.stderr
        assert restored.returncode == 0 and copy["orders"].count_documents({}) == 2500
        actions = [e["action"] for e in database["audit_log"].find({}).sort("seq", 1)]
        assert actions == ["backup.completed", "backup.verified", "backup.restored"]
    finally:
        database.client.drop_database(copy.name)


def test_a_failed_backup_is_recorded_and_shown_by_metrics(mongo_server: str, tmp_path: Path) -> None:
    from api import create_app

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    cfg = dataclasses.replace(settings(), backup_dir=str(blocked))
    suite_db = collections.database()  # the database the API's /metrics reads

    with pytest.raises(OSError):
        jobs.run(suite_db, by="test", reason="test", cfg=cfg)
    metrics = create_app().test_client().get("/metrics").get_data(as_text=True)

    failed = catalog.last(suite_db, catalog.FAILED)
    assert failed["error"].startswith(("FileExistsError", "NotADirectoryError"))
    line = next(m for m in metrics.splitlines() if m.startswith("kirana_backup_last_failure_timestamp_seconds "))
    assert float(line.split()[1]) == failed["finished_at_ms"] / 1000
