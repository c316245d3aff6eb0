"""Restore a backup into a named database, and read a restored copy back for comparison.

The files are checked against the manifest first: a truncated or altered
backup is refused before anything is written. Documents are inserted as
the raw BSON they were dumped as (`RawBSONDocument`), so field order and
types come back byte for byte.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.database import Database

from kirana.backups import SKIPPED
from kirana.backups import manifest as manifests
from kirana.backups.dump import BATCH, split_documents

RAW = CodecOptions(document_class=RawBSONDocument)
# Index options worth carrying over; the rest (v, ns, background) describe the old server.
_INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds")


class TargetNotEmpty(manifests.BackupError):
    """The target database holds documents; restore overwrites only with drop."""


class Damaged(manifests.BackupError):
    def __init__(self, problems: list[manifests.Problem]) -> None:
        super().__init__("backup does not match its manifest: " + "; ".join(map(str, problems)))
        self.problems = problems


def documents(path: Path) -> Iterator[RawBSONDocument]:
    """The documents of a ``.bson.gz`` file, one at a time."""
    with gzip.open(path, "rb") as f:
        yield from bson.decode_file_iter(f, codec_options=RAW)  # type: ignore[arg-type]


def read_metadata(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rb") as f:
        return dict(json_util.loads(f.read()))


def non_empty_collections(db: Database) -> list[str]:
    return [name for name in sorted(db.list_collection_names())
            if not name.startswith("system.") and name not in SKIPPED and db[name].find_one({}, {"_id": 1}) is not None]


def create_indexes(db: Database, collection: str, specs: list[dict[str, Any]]) -> None:
    for spec in specs:
        keys = list(dict(spec["key"]).items())
        if keys == [("_id", 1)]:
            continue
        options = {k: spec[k] for k in _INDEX_OPTIONS if k in spec}
        db[collection].create_index([(field, int(direction)) for field, direction in keys],
                                    name=spec.get("name"), **options)


def restore(backup_path: Path, target: Database, *, drop: bool = False,
            progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Restore into `target`; returns documents restored per collection.

    Refuses a target that holds any document unless `drop`, which drops the
    backup's collections in the target first (as ``mongorestore --drop``).
    """
    problems = manifests.check(backup_path)
    if problems:
        raise Damaged(problems)
    manifest = manifests.read(backup_path)
    occupied = non_empty_collections(target)
    if occupied and not drop:
        raise TargetNotEmpty(f"database {target.name} is not empty ({', '.join(occupied[:5])}"
                             f"{', ...' if len(occupied) > 5 else ''}); restore with drop to overwrite")
    restored: dict[str, int] = {}
    for entry in manifest["collections"]:
        name = entry["name"]
        if drop:
            target.drop_collection(name)
        if name not in target.list_collection_names():
            target.create_collection(name)
        batch: list[RawBSONDocument] = []
        count = 0
        for doc in documents(backup_path / entry["data"]["file"]):
            batch.append(doc)
            if len(batch) >= BATCH:
                target[name].insert_many(batch, ordered=True)
                count += len(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            target[name].insert_many(batch, ordered=True)
            count += len(batch)
            if progress:
                progress(len(batch))
        create_indexes(target, name, read_metadata(backup_path / entry["metadata"]["file"])["indexes"])
        restored[name] = count
    return restored


def content_sha256(db: Database, collection: str) -> tuple[int, str]:
    """(documents, SHA-256 of the raw BSON in `_id` order): what dump recorded as content_sha256."""
    digest = hashlib.sha256()
    count = 0
    for batch in db[collection].find_raw_batches({}, sort=[("_id", 1)], batch_size=BATCH):
        digest.update(batch)
        count += sum(1 for _ in split_documents(batch))
    return count, digest.hexdigest()

