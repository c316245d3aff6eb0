"""Reading the index: ranked, filtered, faceted search and autocomplete.

A query is read as clauses, one per word or per synonym term found in it
("alu bhujia" -> [aloo|alu|potato|potatoes] [bhujia]). Each word expands to the
indexed words it may mean: itself (weight 1), words it starts (partial words,
0.7), and for words of five letters or more the words one typo away (0.6).
Every clause must match (AND); if that finds nothing, products matching the
most clauses come first instead (so one unknown word does not empty the page).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from kirana.search import text
from kirana.search.index import space

EXACT, PREFIX, TYPO, SYNONYM = 1.0, 0.7, 0.6, 0.9
FIELD_WEIGHT = {"nt": 1.0, "bt": 0.8, "ct": 0.5}
# A one- or two-letter word expands to this many words at most (a search box sends "a" too).
MAX_PREFIX_WORDS = 200
SORTS = ("relevance", "price_asc", "price_desc", "popularity")
# Upper bounds (paise) of the price facet's buckets; the last one is open.
PRICE_BUCKETS = (5_000, 10_000, 20_000, 50_000, 100_000)
SHOWN = ("id", "store_id", "sku", "name", "brand", "category", "unit", "price_paise", "mrp_paise", "stock",
         "in_stock", "popularity")

Slot = dict[str, float]  # indexed word -> weight, for one word of the query


@dataclass(frozen=True)
class Clause:
    """One word or synonym term of the query: any alternative matches; an alternative needs all its slots."""

    text: str
    alternatives: list[list[Slot]]


@dataclass(frozen=True)
class Filters:
    store_id: str | None = None
    category: str | None = None
    brand: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None

    def accepts(self, doc: Mapping[str, Any]) -> bool:
        price = int(doc["price_paise"])
        return ((self.store_id is None or doc["store_id"] == self.store_id)
                and (self.category is None or (doc.get("category") or "").casefold() == self.category.casefold())
                and (self.brand is None or (doc.get("brand") or "").casefold() == self.brand.casefold())
                and (self.min_price is None or price >= self.min_price)
                and (self.max_price is None or price <= self.max_price)
                and (self.in_stock is None or bool(doc["in_stock"]) == self.in_stock))


@dataclass
class Result:
    items: list[dict[str, Any]]
    total: int
    facets: dict[str, Any]
    relaxed: bool = False
    version: str | None = None
    interpreted: list[str] = field(default_factory=list)


def price_bucket(paise: int) -> str:
    low = 0
    for high in PRICE_BUCKETS:
        if paise < high:
            return f"{low // 100}-{high // 100}"
        low = high
    return f"{low // 100}+"


class Reader:
    """One search against one keyspace version, read once at the start."""

    def __init__(self, r: redis.Redis, root: str, version: str) -> None:
        self.r = r
        self.base = space(root, version)

    def expand(self, words: list[str]) -> dict[str, Slot]:
        """What each query word may mean, in one round trip for all of them."""
        pipe = self.r.pipeline(transaction=False)
        asked: list[tuple[str, str, list[str]]] = []
        for word in dict.fromkeys(words):
            if len(word) >= 2:
                pipe.smembers(f"{self.base}pv:{word}")
                asked.append((word, "prefix", []))
            if len(word) >= text.TYPO_MIN_LEN:
                # Words with one letter more, or one changed: they share a deletion with the query word.
                shorter = sorted(text.deletes(word))
                pipe.sunion([f"{self.base}del:{d}" for d in [word, *shorter]])
                asked.append((word, "typo", []))
                # Words with one letter less, or two letters swapped: in the vocabulary as they are.
                candidates = shorter + sorted(text.transposes(word))
                pipe.smismember(f"{self.base}vocab", candidates)
                asked.append((word, "known", candidates))
        slots: dict[str, Slot] = {}
        for word in words:
            slots[word] = {word: EXACT}
            singular = text.stem(word)
            if singular:
                slots[word][singular] = EXACT
        for (word, kind, candidates), answer in zip(asked, pipe.execute() if asked else [], strict=True):
            slot = slots[word]
            if kind == "prefix":
                for found in sorted(answer)[:MAX_PREFIX_WORDS]:
                    slot.setdefault(found, PREFIX)
                continue
            near = answer if kind == "typo" else [w for w, k in zip(candidates, answer, strict=True) if k]
            for w in near:
                if w != word and text.within_one_typo(word, w):
                    slot.setdefault(w, TYPO)
        return slots

    def store(self, store_id: str) -> set[str]:
        return set(self.r.smembers(f"{self.base}store:{store_id}"))

    def postings(self, words: set[str], store_id: str | None = None) -> dict[str, set[str]]:
        """Product ids per word; only `store_id`'s, intersected in Redis (a catalog of many stores sends less)."""
        ordered = sorted(words)
        pipe = self.r.pipeline(transaction=False)
        for word in ordered:
            if store_id:
                pipe.sinter([f"{self.base}t:{word}", f"{self.base}store:{store_id}"])
            else:
                pipe.smembers(f"{self.base}t:{word}")
        return dict(zip(ordered, (set(p) for p in pipe.execute()), strict=True))

    def docs(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        return [json.loads(raw) for raw in self.r.hmget(f"{self.base}docs", ids) if raw]

    def all_ids(self) -> list[str]:
        return list(self.r.hkeys(f"{self.base}docs"))


def clauses(words: list[str], synonyms: Mapping[str, list[tuple[str, ...]]], reader: Reader) -> list[Clause]:
    """Split the query into synonym terms (longest first) and single words, and expand each."""
    terms: list[tuple[str, int]] = []  # (term, words it spans)
    i = 0
    while i < len(words):
        n = next((n for n in range(min(3, len(words) - i), 0, -1) if " ".join(words[i:i + n]) in synonyms), 1)
        terms.append((" ".join(words[i:i + n]), n))
        i += n
    slots = reader.expand([term for term, n in terms if n == 1])
    found: list[Clause] = []
    for term, n in terms:
        alternatives = [[slots[term]]] if n == 1 else []
        for alt in synonyms.get(term, []):
            alternatives.append([{w: (EXACT if " ".join(alt) == term else SYNONYM)} for w in alt])
        found.append(Clause(term, alternatives))
    return found


def _matches(clause: Clause, postings: Mapping[str, set[str]]) -> set[str]:
    matched: set[str] = set()
    for alternative in clause.alternatives:
        slots = [set().union(*(postings.get(w, set()) for w in slot)) for slot in alternative]
        matched |= set.intersection(*slots) if slots else set()
    return matched


def _slot_score(slot: Slot, doc: Mapping[str, Any]) -> float:
    """The best field's match, plus a little for each other field that matches too.

    "Atta" in both the name and the category ("Atta & Flours") is a bag of atta;
    "atta" in the name alone may be Maggi Atta Noodles.
    """
    per_field = []
    for fld, weight in FIELD_WEIGHT.items():
        hit = max((slot.get(word, 0.0) for word in doc.get(fld) or ()), default=0.0)
        per_field.append(hit * weight)
    best = max(per_field)
    return best + 0.1 * (sum(per_field) - best) if best > 0 else 0.0


def _clause_score(clause: Clause, doc: Mapping[str, Any]) -> float:
    best = 0.0
    for alternative in clause.alternatives:
        scores = [_slot_score(slot, doc) for slot in alternative]
        if scores and min(scores) > 0:
            best = max(best, sum(scores) / len(scores))
    return best


def _relevance(found: list[Clause], doc: Mapping[str, Any]) -> float:
    score = sum(_clause_score(c, doc) for c in found)
    # Prefer the shorter name among equal matches: "Amul Pure Ghee" over a gift box that mentions ghee.
    return score + 0.05 / math.sqrt(max(1, len(doc.get("nt") or ())))


def facets(docs: list[dict[str, Any]], filters: Filters | None = None) -> dict[str, Any]:
    """Counts per category, brand, price bucket and stock state.

    Each facet counts the products that pass every *other* filter (with `filters`), so a
    shopper who picked a brand still sees how many the other brands have ("disjunctive"
    facets); without `filters`, all of `docs` are counted.
    """
    f = filters or Filters()
    without = {
        "category": dataclasses.replace(f, category=None),
        "brand": dataclasses.replace(f, brand=None),
        "price": dataclasses.replace(f, min_price=None, max_price=None),
        "in_stock": dataclasses.replace(f, in_stock=None),
    }
    pool = {name: [d for d in docs if other.accepts(d)] for name, other in without.items()}
    category: Counter[str] = Counter(d["category"] for d in pool["category"] if d.get("category"))
    brand: Counter[str] = Counter(d["brand"] for d in pool["brand"] if d.get("brand"))
    buckets: Counter[str] = Counter(price_bucket(int(d["price_paise"])) for d in pool["price"])
    in_stock = sum(1 for d in pool["in_stock"] if d["in_stock"])
    order = [price_bucket(b - 1) for b in PRICE_BUCKETS] + [price_bucket(PRICE_BUCKETS[-1])]
    return {
        "category": [{"value": k, "count": v} for k, v in sorted(category.items(), key=lambda kv: (-kv[1], kv[0]))],
        "brand": [{"value": k, "count": v} for k, v in sorted(brand.items(), key=lambda kv: (-kv[1], kv[0]))],
        "price": [{"value": b, "count": buckets[b]} for b in order if buckets[b]],
        "in_stock": {"true": in_stock, "false": len(pool["in_stock"]) - in_stock},
    }


def search(r: redis.Redis, root: str, synonyms: Mapping[str, list[tuple[str, ...]]], q: str, filters: Filters, *,
           sort: str = "relevance", page: int = 1, per_page: int = 20) -> Result:
    version = r.get(f"{root}:current")
    if not version:
        return Result(items=[], total=0, facets=facets([]), version=None)
    reader = Reader(r, root, str(version))
    words = text.words(q)
    relaxed = False
    found: list[Clause] = []
    if words:
        found = clauses(words, synonyms, reader)
        all_words = {w for c in found for alt in c.alternatives for slot in alt for w in slot}
        postings = reader.postings(all_words, filters.store_id)
        per_clause = [_matches(c, postings) for c in found]
        ids = set.intersection(*per_clause)
        if not ids and len(per_clause) > 1:
            relaxed = True
            ids = set().union(*per_clause)
        candidates = reader.docs(sorted(ids))
    else:
        candidates = reader.docs(sorted(reader.store(filters.store_id)) if filters.store_id else reader.all_ids())
    hits = [d for d in candidates if filters.accepts(d)]
    scores = {d["id"]: _relevance(found, d) for d in hits}
    if relaxed:
        # Matching more of the query's clauses matters most when not all could match.
        for d in hits:
            scores[d["id"]] += 10 * sum(1 for c in found if _clause_score(c, d) > 0)
    if sort == "price_asc":
        hits.sort(key=lambda d: (d["price_paise"], -scores[d["id"]], d["id"]))
    elif sort == "price_desc":
        hits.sort(key=lambda d: (-d["price_paise"], -scores[d["id"]], d["id"]))
    elif sort == "popularity":
        hits.sort(key=lambda d: (-d["popularity"], -scores[d["id"]], d["id"]))
    else:
        hits.sort(key=lambda d: (-round(scores[d["id"]], 6), not d["in_stock"], -d["popularity"], d["name"], d["id"]))
    start = (page - 1) * per_page
    items = [{k: d.get(k) for k in SHOWN} | {"score": round(scores[d["id"]], 4)}
             for d in hits[start:start + per_page]]
    return Result(items=items, total=len(hits), facets=facets(candidates, filters), relaxed=relaxed,
                  version=str(version), interpreted=[c.text for c in found])


def suggest(r: redis.Redis, root: str, synonyms: Mapping[str, list[tuple[str, ...]]], q: str, *, limit: int = 10
            ) -> list[dict[str, str]]:
    """Product lines, brands and categories that start (or have a word starting) with what was typed."""
    version = r.get(f"{root}:current")
    normal = text.normalize(q)
    if not version or not normal:
        return []
    base = space(root, str(version))
    prefixes = [normal[: text.PREFIX_MAX_LEN]]
    # "aata": also what its synonyms start ("atta ...").
    last_word = normal.split()[-1]
    head = normal[: len(normal) - len(last_word)]
    for alt in synonyms.get(last_word, []):
        candidate = (head + " ".join(alt))[: text.PREFIX_MAX_LEN]
        if candidate not in prefixes:
            prefixes.append(candidate)
    ranked = _ranked_suggestions(r, base, prefixes, limit)
    if not ranked and len(last_word) >= text.TYPO_MIN_LEN:
        # Nothing starts so: a typo in a complete word ("aashirvad"); suggest what its neighbours start.
        near = Reader(r, root, str(version)).expand([last_word])[last_word]
        typo_prefixes = [(head + w)[: text.PREFIX_MAX_LEN] for w, weight in sorted(near.items()) if weight == TYPO]
        ranked = _ranked_suggestions(r, base, typo_prefixes, limit)
    ordered = sorted(ranked, key=lambda m: (ranked[m][1], ranked[m][0], m))[:limit]
    return [{"kind": m.split("\x1f", 1)[0], "text": m.split("\x1f", 1)[1]} for m in ordered]


def _ranked_suggestions(r: redis.Redis, base: str, prefixes: list[str], limit: int) -> dict[str, tuple[float, int]]:
    """member -> (score, index of the first prefix that found it), over the prefixes' sorted sets."""
    if not prefixes:
        return {}
    pipe = r.pipeline(transaction=False)
    for prefix in prefixes:
        pipe.zrange(f"{base}sg:{prefix}", 0, limit - 1, withscores=True)
    ranked: dict[str, tuple[float, int]] = {}
    for rank, found in enumerate(pipe.execute()):
        for member, score in found:
            best = ranked.get(member)
            if best is None or (rank, score) < (best[1], best[0]):
                ranked[member] = (score, rank)
    return ranked
