"""Write a backup: every collection streamed to ``<db>/<collection>.bson.gz`` in `_id` order.

Documents go from the server to the gzip stream as the raw BSON batches the
server sends (`find_raw_batches`), never decoded and never held beyond one
batch, so memory stays flat however large the collection. Sorting by `_id`
makes the uncompressed stream of a collection a function of its contents:
the manifest keeps its SHA-256 (`content_sha256`), and verify compares a
restored copy against it.

Each collection is read on its own, as mongodump does without ``--oplog``:
a backup taken while the API writes is consistent per collection, not
across collections.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tomllib
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from bson import json_util
from pymongo.database import Database

from kirana.backups import SKIPPED
from kirana.backups import manifest as manifests
from kirana.clock import now_ms
from kirana.config import ROOT

BATCH = 1000
# mongodump's gzip writer uses the default level too.
GZIP_LEVEL = 6
# Index fields that describe where an index lived, not what it is.
_INDEX_DROP = frozenset({"ns"})


@cache
def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


class _CountingWriter(io.RawIOBase):
    """The file under the gzip stream: counts and hashes the compressed bytes on their way to disk."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.bytes += len(view)
        return self.target.write(view)


def split_documents(batch: bytes) -> Iterable[memoryview]:
    """The BSON documents of a raw batch, by their length prefixes."""
    view = memoryview(batch)
    at = 0
    while at < len(view):
        size = int.from_bytes(view[at:at + 4], "little")
        yield view[at:at + size]
        at += size


def collection_names(db: Database) -> list[str]:
    return sorted(name for name in db.list_collection_names()
                  if name not in SKIPPED and not name.startswith("system."))


def index_specs(db: Database, collection: str) -> list[dict[str, Any]]:
    """The collection's indexes as mongodump writes them (v, key, name, unique, ...)."""
    return [{k: v for k, v in dict(spec).items() if k not in _INDEX_DROP}
            for spec in db[collection].list_indexes()]


def metadata(db: Database, collection: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for info in db.list_collections(filter={"name": collection}):
        options = dict(info.get("options") or {})
    # No "uuid": the embedded server reports a placeholder, and mongorestore
    # only reads one with --preserveUUID.
    return {"indexes": index_specs(db, collection), "collectionName": collection, "type": "collection",
            "options": options}


def _write_metadata(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    text = json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS).encode()
    with path.open("wb") as raw:
        counter = _CountingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=counter, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            gz.write(text)
    return {"bytes": counter.bytes, "sha256": counter.sha256.hexdigest()}


def dump_collection(db: Database, collection: str, folder: Path,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Stream one collection; returns its manifest entry."""
    prefix = f"{db.name}/{collection}"
    content = hashlib.sha256()
    documents = raw_bytes = 0
    with (folder / f"{collection}.bson.gz").open("wb") as raw:
        counter = _CountingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=counter, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            for batch in db[collection].find_raw_batches({}, sort=[("_id", 1)], batch_size=BATCH):
                count = sum(1 for _ in split_documents(batch))
                gz.write(batch)
                content.update(batch)
                documents += count
                raw_bytes += len(batch)
                if progress:
                    progress(count, len(batch))
    meta = _write_metadata(folder / f"{collection}.metadata.json.gz", metadata(db, collection))
    return {
        "name": collection,
        "documents": documents,
        "bson_bytes": raw_bytes,
        "content_sha256": content.hexdigest(),
        "data": {"file": f"{prefix}.bson.gz", "bytes": counter.bytes, "sha256": counter.sha256.hexdigest()},
        "metadata": {"file": f"{prefix}.metadata.json.gz", **meta},
    }


def dump(db: Database, root: Path, backup_id: str, *,
         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write backup `backup_id` of `db` under `root`; returns its manifest.

    `progress(documents, bytes)` is called after every batch.
    """
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{backup_id}.partial"
    final = root / backup_id
    if final.exists():
        raise manifests.BackupError(f"backup {backup_id} already exists")
    shutil.rmtree(partial, ignore_errors=True)
    folder = partial / db.name
    folder.mkdir(parents=True)
    started = now_ms()
    try:
        entries = [dump_collection(db, name, folder, progress) for name in collection_names(db)]
        manifest = {
            "format": manifests.FORMAT,
            "backup_id": backup_id,
            "database": db.name,
            "project_version": project_version(),
            "started_at_ms": started,
            "finished_at_ms": now_ms(),
            "documents": sum(e["documents"] for e in entries),
            "bytes": sum(e["data"]["bytes"] + e["metadata"]["bytes"] for e in entries),
            "collections": entries,
        }
        manifests.write(partial, manifest)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest
