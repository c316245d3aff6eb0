"""Product search: the one interface the API, the tasks and the CLI use.

The engine behind it is an inverted index in Redis (kirana.search.index);
a deployment that outgrows one Redis would put OpenSearch, Typesense or
Meilisearch behind these same functions (see README, "Search").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.database import Database

from kirana.search import dirty, index, query, synonyms
from kirana.search.query import SORTS, Filters, Result

__all__ = ["SORTS", "Filters", "Result", "current_version", "index_batch", "lag_seconds", "rebuild", "search",
           "stats", "suggest"]


def search(db: Database, q: str, filters: Filters, *, sort: str = "relevance", page: int = 1,
           per_page: int = 20) -> Result:
    return query.search(index.client(), index.root_of(db), synonyms.table(db), q, filters, sort=sort, page=page,
                        per_page=per_page)


def suggest(db: Database, q: str, *, limit: int = 10) -> list[dict[str, str]]:
    table = synonyms.table(db)
    found = query.suggest(index.client(), index.root_of(db), table, q, limit=limit)
    if found or len(q.strip()) < 3:
        return found
    # Nothing starts with what was typed ("surf exel"): suggest the lines a search finds instead.
    lines: list[dict[str, str]] = []
    for item in query.search(index.client(), index.root_of(db), table, q, Filters(), per_page=limit * 3).items:
        line = {"kind": "product", "text": index.line_name(item)}
        if line not in lines:
            lines.append(line)
    return lines[:limit]


def index_batch(db: Database, *, size: int) -> dirty.Batch:
    return dirty.index_batch(db, index.client(), size=size)


def rebuild(db: Database, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    synonyms.seed(db)
    return index.rebuild(db, index.client(), progress=progress)


def lag_seconds(db: Database) -> float:
    return dirty.lag_ms(db) / 1000.0


def current_version(db: Database) -> str | None:
    return index.Index(index.client(), index.root_of(db)).current()


def stats(db: Database) -> dict[str, Any]:
    return index.Index(index.client(), index.root_of(db)).stats() | {"lag_s": lag_seconds(db)}
