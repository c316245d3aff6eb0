"""What a migration step is: the collections and indexes it declares, an optional data change, its checksum."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymongo.database import Database

    from migrations.backfill import Context

# (collection, keys, unique): the shape kirana.db.INDEXES has, all keys ascending.
Index = tuple[str, tuple[tuple[str, int], ...], bool]
DataChange = Callable[["Database", "Context"], None]


def index(collection: str, *fields: str, unique: bool = False) -> Index:
    return collection, tuple((f, 1) for f in fields), unique


@dataclass(frozen=True)
class Step:
    """One version. `up` creates `collections`, runs `data_up`, then creates `indexes`
    (data first, so a backfill can make a unique index possible). `down` runs
    `data_down`, drops the indexes, then the collections; a step with
    `irreversible` set (the reason) refuses to go down.
    """

    version: int
    name: str
    collections: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    data_up: DataChange | None = None
    data_down: DataChange | None = None
    irreversible: str | None = None
    notes: str = field(default="", compare=False)

    def checksum(self) -> str:
        """SHA-256 of the declaration and the source of its data changes.

        Stored in the history when the step is applied; a different value
        later means the step was edited after it ran somewhere.
        """
        declared = json.dumps({
            "version": self.version, "name": self.name, "collections": list(self.collections),
            "indexes": [[c, [list(k) for k in keys], u] for c, keys, u in self.indexes],
            "irreversible": self.irreversible,
        }, sort_keys=True)
        digest = hashlib.sha256(declared.encode())
        for change in (self.data_up, self.data_down):
            if change is not None:
                digest.update(inspect.getsource(change).encode())
        return digest.hexdigest()
