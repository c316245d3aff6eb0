"""The manifest of a backup, and the check that its files are what it says."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "kirana-backup/1"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup that cannot be used as asked."""


class NotFound(BackupError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read(backup_path: Path) -> dict[str, Any]:
    path = backup_path / MANIFEST
    if not path.is_file():
        raise NotFound(f"{backup_path} has no {MANIFEST}: not a complete backup")
    return dict(json.loads(path.read_text()))


def write(backup_path: Path, manifest: dict[str, Any]) -> None:
    tmp = backup_path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(backup_path / MANIFEST)


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def check(backup_path: Path) -> list[Problem]:
    """Every file the manifest lists is there with its size and SHA-256; nothing is left out."""
    manifest = read(backup_path)
    problems: list[Problem] = []
    listed: set[str] = set()
    for entry in manifest["collections"]:
        for role in ("data", "metadata"):
            item = entry[role]
            listed.add(item["file"])
            path = backup_path / item["file"]
            if not path.is_file():
                problems.append(Problem(item["file"], "missing"))
                continue
            size = path.stat().st_size
            if size != item["bytes"]:
                problems.append(Problem(item["file"], f"{size} bytes, manifest says {item['bytes']}"))
            elif sha256_of(path) != item["sha256"]:
                problems.append(Problem(item["file"], "SHA-256 differs from the manifest"))
    database_dir = backup_path / manifest["database"]
    if database_dir.is_dir():
        for path in sorted(database_dir.iterdir()):
            name = f"{manifest['database']}/{path.name}"
            if name not in listed:
                problems.append(Problem(name, "not in the manifest"))
    return problems
