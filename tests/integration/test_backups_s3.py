"""Backups kept in S3: against moto's S3 server over real HTTP (boto3 speaks the real protocol to it)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from kirana.backups import dump, jobs, manifest, restore, storage
from kirana.config import ROOT, Settings, settings
from tests.integration.backup_copies import dated_copy

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """boto3's own credential chain, pointed at test credentials only (no ~/.aws, no instance role)."""
    env = {**AWS_ENV, "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"), "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3(s3_url: str, aws_env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")


@pytest.fixture
def cfg(tmp_path: Path, s3: Any, s3_url: str) -> Settings:
    bucket = f"kirana-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return dataclasses.replace(settings(), backup_dir=str(tmp_path / "staging"), backup_storage="s3",
                               backup_s3_bucket=bucket, backup_s3_prefix="prod/backups",
                               backup_s3_endpoint_url=s3_url, backup_keep_daily=2, backup_keep_weekly=1)


def _keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _populate(database) -> None:  # type: ignore[no-untyped-def]
    database["orders"].insert_many([
        {"_id": f"ord_{i:05d}", "idempotency_key": f"auto:ord_{i:05d}", "status": "confirmed",
         "store_id": "store_1", "created_at_ms": 1_700_000_000_000 + i, "total_paise": 1999 * i,
         "lines": [{"sku": "ATTA-5KG", "qty": i % 3 + 1}], "created_at": dt.datetime(2026, 11, 28, tzinfo=dt.UTC)}
        for i in range(2000)
    ])
    database["users"].insert_many([{"_id": f"usr_{i}", "email": f"u{i}@example.in"} for i in range(7)])


def _snapshot(database) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    raw = database.with_options(codec_options=restore.RAW)
    return {name: [doc.raw for doc in raw[name].find({}).sort("_id", 1)]
            for name in sorted(database.list_collection_names()) if name != "backups"}


def test_backup_goes_to_s3_and_a_restore_from_it_gives_identical_documents(database, cfg: Settings, s3: Any) -> None:
    _populate(database)
    before = _snapshot(database)

    written = jobs.run(database, by="test", reason="test", cfg=cfg)
    backup_id = written["backup_id"]
    keys = _keys(s3, cfg.backup_s3_bucket)
    for name in before:
        database.drop_collection(name)
    with jobs.fetched("latest", cfg) as path:
        restored = restore.restore(path, database)
        scratch = path

    assert f"prod/backups/{backup_id}/manifest.json" in keys
    assert f"prod/backups/{backup_id}/{database.name}/orders.bson.gz" in keys
    assert len(keys) == 1 + 2 * len(written["collections"])
    assert restored["orders"] == 2000 and _snapshot(database) == before
    # The local copy was staging only, and the download was scratch: neither stays.
    assert list(Path(cfg.backup_dir).iterdir()) == [] and not scratch.exists()
    assert [b.backup_id for b in jobs.stored(cfg)] == [backup_id]
    assert database["backups"].find_one({"_id": backup_id})["path"] == \
        f"s3://{cfg.backup_s3_bucket}/prod/backups/{backup_id}/"


def test_the_manifest_is_uploaded_last_and_a_backup_without_it_is_not_listed(database, cfg: Settings,
                                                                              s3: Any) -> None:
    database["orders"].insert_one({"_id": "ord_1", "idempotency_key": "auto:ord_1"})
    uploads: list[str] = []

    def record(params: dict[str, Any], event_name: str, **_: Any) -> None:
        if event_name.endswith((".PutObject", ".CreateMultipartUpload")):
            uploads.append(params["Key"])

    s3.meta.events.register("provide-client-params.s3.*", record)
    root = Path(cfg.backup_dir)
    store = storage.S3Storage(cfg.backup_s3_bucket, cfg.backup_s3_prefix, staging=root, client=s3)
    dump.dump(database, root, "20261128T010000Z-a1b2c3")
    store.keep(root / "20261128T010000Z-a1b2c3")
    s3.delete_object(Bucket=cfg.backup_s3_bucket, Key="prod/backups/20261128T010000Z-a1b2c3/manifest.json")

    assert uploads[-1] == "prod/backups/20261128T010000Z-a1b2c3/manifest.json"
    assert len(uploads) > 1 and not (root / "20261128T010000Z-a1b2c3").exists()
    assert jobs.stored(cfg) == []
    with pytest.raises(manifest.NotFound):
        jobs.verify(database.client, database, "20261128T010000Z-a1b2c3", cfg=cfg)


def test_a_tampered_object_is_caught_by_the_manifest(database, cfg: Settings, s3: Any) -> None:
    _populate(database)
    backup_id = jobs.run(database, by="test", reason="test", cfg=cfg)["backup_id"]
    good = jobs.verify(database.client, database, cfg=cfg)
    key = f"prod/backups/{backup_id}/{database.name}/orders.bson.gz"
    body = bytearray(s3.get_object(Bucket=cfg.backup_s3_bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=cfg.backup_s3_bucket, Key=key, Body=bytes(body))

    bad = jobs.verify(database.client, database, cfg=cfg)
    target = database.client[f"{database.name}_r"]
    with pytest.raises(restore.Damaged), jobs.fetched(backup_id, cfg) as path:
        restore.restore(path, target)

    assert good.ok and good.backup_id == backup_id
    assert not bad.ok and f"{database.name}/orders.bson.gz: SHA-256 differs from the manifest" in bad.detail[0]
    assert target.list_collection_names() == []
    assert database["backups"].find_one({"_id": backup_id})["verify"] == "failed"


def test_prune_deletes_exactly_the_objects_of_the_backups_retention_drops(mongo_server: str, cfg: Settings,
                                                                         s3: Any) -> None:
    from kirana import db as collections

    # A small database: each backup is three objects (data, metadata, manifest).
    database = collections.client()[f"t_{uuid.uuid4().hex[:12]}"]
    try:
        database["orders"].insert_one({"_id": "ord_1", "total_paise": 100})
        root = Path(cfg.backup_dir)
        store = storage.storage(cfg)
        template = root / "template"
        dump.dump(database, root, "template")
        made = []
        # Nov 20..28 (the 28th a Saturday) at 13:00, and the 28th at 01:00 too.
        for day, hour in [(d, 13) for d in range(20, 29)] + [(28, 1)]:
            backup_id = f"202611{day:02d}T{hour:02d}0000Z-{secrets.token_hex(3)}"
            store.keep(dated_copy(template, root, backup_id, day, hour))
            made.append(backup_id)
        shutil.rmtree(template)
        # An upload in progress (no manifest yet): neither listed nor, being fresh, removed.
        s3.put_object(Bucket=cfg.backup_s3_bucket, Key="prod/backups/20261128T140000Z-inflight/x.bson.gz", Body=b"")

        removed = jobs.prune(database, cfg)

        kept = {made[-3], made[-2]}  # the 27th and the 28th at 13:00: daily=2, and the week's newest
        assert sorted(removed) == sorted(set(made) - kept)
        assert [b.backup_id for b in jobs.stored(cfg)] == sorted(kept)
        assert _keys(s3, cfg.backup_s3_bucket) == sorted(
            [f"prod/backups/{b}/{name}" for b in kept
             for name in ("manifest.json", f"{database.name}/orders.bson.gz",
                          f"{database.name}/orders.metadata.json.gz")]
            + ["prod/backups/20261128T140000Z-inflight/x.bson.gz"])
    finally:
        database.client.drop_database(database.name)


def test_a_big_file_goes_up_in_parts_and_comes_back_identical(cfg: Settings, s3: Any, tmp_path: Path) -> None:
    calls: list[str] = []
    s3.meta.events.register("provide-client-params.s3.*",
                            lambda event_name, **_: calls.append(event_name.rsplit(".", 1)[1]))
    store = storage.S3Storage(cfg.backup_s3_bucket, "p", staging=tmp_path, client=s3)
    big = tmp_path / "big.bson.gz"
    big.write_bytes(os.urandom(9 * 1024 * 1024))  # over boto3's 8 MB multipart threshold

    store.put(big, "p/x/big.bson.gz")
    store.get("p/x/big.bson.gz", tmp_path / "back" / "big.bson.gz")

    assert "CreateMultipartUpload" in calls and calls.count("UploadPart") == 2
    assert hashlib.sha256((tmp_path / "back" / "big.bson.gz").read_bytes()).digest() == \
        hashlib.sha256(big.read_bytes()).digest()


def test_the_cli_runs_lists_and_restores_from_s3(database, cfg: Settings, aws_env: dict[str, str]) -> None:
    _populate(database)
    copy = database.client[f"{database.name}_copy"]
    env = {**os.environ, **aws_env, "MONGO_DB": database.name, "BACKUP_DIR": cfg.backup_dir, "BACKUP_STORAGE": "s3",
           "BACKUP_S3_BUCKET": cfg.backup_s3_bucket, "BACKUP_S3_PREFIX": cfg.backup_s3_prefix,
           "BACKUP_S3_ENDPOINT_URL": cfg.backup_s3_endpoint_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kirana.backups", *args], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    try:
        ran = cli("run")
        backup_id = ran.stdout.split(":")[0]
        listed = cli("list")
        restored = cli("restore", "latest", "--into", copy.name)

        assert ran.returncode == 0 and f"s3://{cfg.backup_s3_bucket}/prod/backups/{backup_id}/" in ran.stdout, \
            ran.stderr
        assert listed.returncode == 0 and backup_id in listed.stdout and "s3://" in listed.stdout
        assert restored.returncode == 0, restored.stderr
        assert copy["orders"].count_documents({}) == 2000
    finally:
        database.client.drop_database(copy.name)


def test_s3_storage_without_a_bucket_is_refused(tmp_path: Path) -> None:
    cfg = dataclasses.replace(settings(), backup_dir=str(tmp_path), backup_storage="s3", backup_s3_bucket="")
    with pytest.raises(manifest.BackupError, match="BACKUP_S3_BUCKET"):
        storage.storage(cfg)
    with pytest.raises(manifest.BackupError, match="BACKUP_STORAGE"):
        storage.storage(dataclasses.replace(cfg, backup_storage="ftp"))
