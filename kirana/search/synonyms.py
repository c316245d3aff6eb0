"""Synonyms and transliterations of Indian grocery words, in a table ops can extend without a deploy.

Each document of `search_synonyms` is one group of interchangeable terms:
``{"_id": "atta", "terms": ["atta", "aata", "wheat flour"], "updated_at_ms": ...}``.
A term may be several words ("wheat flour"): it then matches products that
have all of them. Groups are applied when a query is read, so an edit counts
from the next query on (after at most `CACHE_TTL_S` in each process) and the
index never needs rebuilding for it.
"""

from __future__ import annotations

import threading
import time

from pymongo.database import Database

from kirana.clock import now_ms
from kirana.search.text import normalize

SYNONYMS = "search_synonyms"
CACHE_TTL_S = 30.0
# The longest term, in words, that a query is scanned for.
MAX_TERM_WORDS = 3

# Seeded once; ops edit the collection, and a re-seed never overwrites their groups.
SEED: dict[str, tuple[str, ...]] = {
    "atta": ("atta", "aata", "wheat flour", "gehun atta", "gehu atta"),
    "dal": ("dal", "daal", "dhal", "lentil", "lentils"),
    "aloo": ("aloo", "alu", "potato", "potatoes"),
    "dahi": ("dahi", "curd", "yogurt", "yoghurt"),
    "jeera": ("jeera", "jira", "zeera", "cumin"),
    "haldi": ("haldi", "turmeric"),
    "mirch": ("mirch", "mirchi", "chilli", "chili", "chillies"),
    "dhania": ("dhania", "dhaniya", "coriander"),
    "chawal": ("chawal", "rice"),
    "chini": ("chini", "cheeni", "sugar"),
    "namak": ("namak", "salt"),
    "tel": ("tel", "oil"),
    "ghee": ("ghee", "ghi", "clarified butter"),
    "besan": ("besan", "gram flour", "chickpea flour"),
    "maida": ("maida", "all purpose flour", "refined flour"),
    "sooji": ("sooji", "suji", "rava", "semolina"),
    "chana": ("chana", "channa", "chickpea", "chickpeas"),
    "rajma": ("rajma", "kidney beans"),
    "toor": ("toor", "tur", "arhar", "tuvar", "pigeon peas"),
    "moong": ("moong", "mung", "green gram"),
    "urad": ("urad", "udad", "black gram"),
    "masoor": ("masoor", "red lentils"),
    "paneer": ("paneer", "cottage cheese"),
    "makhana": ("makhana", "fox nuts", "lotus seeds"),
    "kaju": ("kaju", "cashew", "cashews"),
    "badam": ("badam", "almond", "almonds"),
    "kishmish": ("kishmish", "raisins", "raisin"),
    "anjeer": ("anjeer", "anjir", "fig", "figs"),
    "gud": ("gud", "gur", "jaggery"),
    "methi": ("methi", "fenugreek"),
    "chai": ("chai", "tea"),
    "doodh": ("doodh", "dudh", "milk"),
    "agarbatti": ("agarbatti", "agarbathi", "incense sticks", "incense"),
    "kapoor": ("kapoor", "kapur", "camphor"),
    "sabun": ("sabun", "soap"),
    "achar": ("achar", "achaar", "pickle"),
    "poha": ("poha", "pohe", "flattened rice", "beaten rice"),
    "chaas": ("chaas", "chaach", "chhachh", "buttermilk"),
    "makkhan": ("makkhan", "makhan", "butter"),
    "ketchup": ("ketchup", "tomato sauce"),
    "pani": ("pani", "paani", "water"),
    "khajur": ("khajur", "khajoor", "dates"),
}


def seed(db: Database) -> int:
    """Insert the groups that are missing; returns how many were added."""
    added = 0
    for group, terms in SEED.items():
        done = db[SYNONYMS].update_one(
            {"_id": group},
            {"$setOnInsert": {"terms": list(terms), "updated_at_ms": now_ms()}},
            upsert=True,
        )
        added += 1 if done.upserted_id is not None else 0
    return added


def put(db: Database, group: str, terms: list[str]) -> dict[str, object]:
    """Create or replace one group (ops' edit)."""
    cleaned = sorted({normalize(t) for t in terms if normalize(t)})
    db[SYNONYMS].update_one({"_id": group}, {"$set": {"terms": cleaned, "updated_at_ms": now_ms()}}, upsert=True)
    _cache.clear()
    return {"group": group, "terms": cleaned}


def delete(db: Database, group: str) -> bool:
    _cache.clear()
    return db[SYNONYMS].delete_one({"_id": group}).deleted_count == 1


def groups(db: Database) -> dict[str, list[str]]:
    return {doc["_id"]: list(doc.get("terms") or []) for doc in db[SYNONYMS].find({}).sort("_id", 1)}


class _Cache:
    """The table per database, re-read at most every CACHE_TTL_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[float, dict[str, list[tuple[str, ...]]]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()

    def table(self, db: Database) -> dict[str, list[tuple[str, ...]]]:
        with self._lock:
            cached = self._tables.get(db.name)
        if cached is not None and time.monotonic() - cached[0] < CACHE_TTL_S:
            return cached[1]
        table = build_table(groups(db).values())
        with self._lock:
            self._tables[db.name] = (time.monotonic(), table)
        return table


def build_table(term_groups: object) -> dict[str, list[tuple[str, ...]]]:
    """normalized term -> every term of its groups, each as a tuple of words."""
    table: dict[str, list[tuple[str, ...]]] = {}
    for terms in term_groups:  # type: ignore[attr-defined]
        normal = [tuple(normalize(t).split()) for t in terms]
        normal = [t for t in normal if t and len(t) <= MAX_TERM_WORDS]
        for term in normal:
            alternatives = table.setdefault(" ".join(term), [])
            alternatives.extend(t for t in normal if t not in alternatives)
    return table


_cache = _Cache()


def table(db: Database) -> dict[str, list[tuple[str, ...]]]:
    return _cache.table(db)
