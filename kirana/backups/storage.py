"""Where finished backups are kept: the local backup directory, or an S3-compatible bucket.

Every backup is first written to the local backup directory (`dump`); the
store then keeps it. `LocalStorage` keeps it where it was written. `S3Storage`
uploads its files to ``<prefix>/<backup id>/<same relative path>`` — the
data and metadata files first, ``manifest.json`` last, so an upload that died
half way leaves a prefix without a manifest, which is never listed, restored
or verified — and then removes the local copy. Reading one back (restore,
verify) downloads it into a scratch directory under the backup directory and
checks it against its manifest there, exactly as a local backup is checked.

Files move as streams: boto3's `upload_file` sends a big file in multipart
parts and `download_file` writes parts to disk, so no file is ever held in
memory whole. Credentials come from boto3's own chain (the standard AWS
environment variables, shared config files, an instance or task role) and
never from Kirana's settings.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kirana.backups import backup_root
from kirana.backups import manifest as manifests
from kirana.clock import now_ms
from kirana.config import Settings, settings

LOCAL = "local"
S3 = "s3"
# Objects per DeleteObjects request: S3's limit.
_DELETE_BATCH = 1000


@dataclass(frozen=True)
class Stored:
    """A complete backup (its manifest is there) in a store."""

    backup_id: str
    location: str
    manifest: dict[str, Any] = field(repr=False)

    @property
    def started_at_ms(self) -> int:
        return int(self.manifest["started_at_ms"])


def _oldest_first(found: list[Stored]) -> list[Stored]:
    return sorted(found, key=lambda b: (b.started_at_ms, b.backup_id))


class LocalStorage:
    """Backups stay in the backup directory, one directory per backup."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def location(self, backup_id: str) -> str:
        return str(self.root / backup_id)

    def keep(self, folder: Path) -> None:
        pass  # already where it belongs

    def backups(self) -> list[Stored]:
        found: list[Stored] = []
        if not self.root.is_dir():
            return found
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.endswith(".partial") and (path / manifests.MANIFEST).is_file():
                found.append(Stored(path.name, str(path), manifests.read(path)))
        return _oldest_first(found)

    @contextmanager
    def fetch(self, backup_id: str) -> Iterator[Path]:
        path = self.root / backup_id
        if not (path / manifests.MANIFEST).is_file():
            raise manifests.NotFound(f"no backup {backup_id!r} (looked in {self.root})")
        yield path

    def delete(self, backup_id: str) -> None:
        shutil.rmtree(self.root / backup_id)

    def stale_incomplete(self, older_than_ms: int) -> list[str]:
        removed: list[str] = []
        if self.root.is_dir():
            for partial in self.root.glob("*.partial"):
                if now_ms() - partial.stat().st_mtime * 1000 > older_than_ms:
                    shutil.rmtree(partial, ignore_errors=True)
                    removed.append(partial.name)
        return removed


class S3Storage:
    """Backups as objects in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, ...)."""

    def __init__(self, bucket: str, prefix: str, *, staging: Path, endpoint_url: str = "",
                 client: Any = None) -> None:
        if not bucket:
            raise manifests.BackupError("BACKUP_STORAGE=s3 needs BACKUP_S3_BUCKET")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = staging
        self.client = client if client is not None else _client(endpoint_url)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, backup_id: str, relative: str = "") -> str:
        parts = [p for p in (self.prefix, backup_id, relative) if p]
        return "/".join(parts) + ("" if relative else "/")

    def location(self, backup_id: str) -> str:
        return f"s3://{self.bucket}/{self._key(backup_id)}"

    # Objects -------------------------------------------------------------

    def put(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, key)

    def get(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, key, str(path))

    def list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under `prefix` (Key, Size, LastModified), page by page."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def delete_keys(self, keys: list[str]) -> None:
        for at in range(0, len(keys), _DELETE_BATCH):
            batch = keys[at:at + _DELETE_BATCH]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in batch], "Quiet": True})
            if answer.get("Errors"):
                raise manifests.BackupError(f"S3 refused to delete {answer['Errors'][:3]}")

    # Backups -------------------------------------------------------------

    def _ids(self) -> list[str]:
        top = f"{self.prefix}/" if self.prefix else ""
        ids: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=top,
                                                                           Delimiter="/"):
            ids += [p["Prefix"][len(top):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return ids

    def _manifest(self, backup_id: str) -> dict[str, Any] | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(backup_id, manifests.MANIFEST))["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        with body:
            return dict(json.loads(body.read()))

    def keep(self, folder: Path) -> None:
        backup_id = folder.name
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != manifests.MANIFEST)
        for path in files:
            self.put(path, self._key(backup_id, path.relative_to(folder).as_posix()))
        # Last: until the manifest is there, the backup is not listed and cannot be restored.
        self.put(folder / manifests.MANIFEST, self._key(backup_id, manifests.MANIFEST))
        shutil.rmtree(folder)

    def backups(self) -> list[Stored]:
        found: list[Stored] = []
        for backup_id in self._ids():
            if (written := self._manifest(backup_id)) is not None:
                found.append(Stored(backup_id, self.location(backup_id), written))
        return _oldest_first(found)

    @contextmanager
    def fetch(self, backup_id: str) -> Iterator[Path]:
        """Download every object of the backup (listed or not, so extras are caught) into a scratch directory."""
        base = self._key(backup_id)
        objects = [o["Key"] for o in self.list(base)]
        if base + manifests.MANIFEST not in objects:
            raise manifests.NotFound(f"no complete backup {backup_id!r} in {self}")
        # Ends in .partial: never taken for a backup, and removed by prune if a crash leaves it.
        scratch = self.staging / f"{backup_id}.fetch-{secrets.token_hex(4)}.partial"
        try:
            for key in objects:
                relative = key[len(base):]
                if not relative or relative.startswith("/") or ".." in relative.split("/"):
                    raise manifests.BackupError(f"refusing object key {key!r}")
                self.get(key, scratch / relative)
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def delete(self, backup_id: str) -> None:
        keys = [o["Key"] for o in self.list(self._key(backup_id))]
        manifest_key = self._key(backup_id, manifests.MANIFEST)
        # The manifest first: a prune that dies half way leaves an incomplete backup, never a damaged one.
        if manifest_key in keys:
            self.delete_keys([manifest_key])
        self.delete_keys([k for k in keys if k != manifest_key])

    def stale_incomplete(self, older_than_ms: int) -> list[str]:
        removed: list[str] = []
        for backup_id in self._ids():
            objects = list(self.list(self._key(backup_id)))
            if any(o["Key"].endswith("/" + manifests.MANIFEST) for o in objects) or not objects:
                continue
            newest_ms = max(o["LastModified"].timestamp() * 1000 for o in objects)
            if now_ms() - newest_ms > older_than_ms:
                self.delete_keys([o["Key"] for o in objects])
                removed.append(backup_id)
        return removed


def _client(endpoint_url: str) -> Any:
    import boto3  # only a process that stores backups in S3 pays for importing boto3
    from botocore.config import Config

    options: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 5}}
    if endpoint_url:
        # Not every S3-compatible store accepts the CRC checksums botocore now sends by
        # default; the manifest's SHA-256 of every file is the check that counts.
        options.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=Config(**options))


def storage(cfg: Settings | None = None) -> LocalStorage | S3Storage:
    """The store `BACKUP_STORAGE` names."""
    cfg = cfg or settings()
    if cfg.backup_storage == LOCAL:
        return LocalStorage(backup_root(cfg))
    if cfg.backup_storage == S3:
        return S3Storage(cfg.backup_s3_bucket, cfg.backup_s3_prefix, staging=backup_root(cfg),
                         endpoint_url=cfg.backup_s3_endpoint_url)
    raise manifests.BackupError(f"BACKUP_STORAGE must be {LOCAL!r} or {S3!r}, not {cfg.backup_storage!r}")
