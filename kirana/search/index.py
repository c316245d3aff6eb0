"""The search index: an inverted index of our own in Redis, shared by every API process and machine.

Keys live under ``kirana:search:<database>:v<N>:`` (one keyspace per full build; the
database name keeps two deployments, or test databases, sharing a Redis apart):

- ``docs``          hash  product id -> the product as search shows it (JSON, with its words per field)
- ``t:<word>``      set   product ids whose name, brand or category has the word
- ``store:<id>``    set   product ids of a store
- ``vocab``         set   every indexed word
- ``pv:<prefix>``   set   words starting with the prefix (partial words)
- ``del:<string>``  set   words one deletion away from the string (one-typo tolerance, SymSpell-style)
- ``sc`` / ``sgp``  hashes suggestion -> how many products carry it / its prefixes
- ``sg:<prefix>``   zset  suggestions (product lines, brands, categories) for a typed prefix

``kirana:search:<database>:current`` names the keyspace searches read; a full build
fills a new one (``building``) and flips ``current`` in one SET, so no search
ever sees a half-built index; the old keyspace expires a minute later, long
after any search that started on it has finished. Every write goes through
one Lua script, which applies it to ``current`` and to a keyspace being built,
so a change made during a build is not lost by the flip.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pymongo
import redis
from pymongo.database import Database

from kirana import db as collections
from kirana.clock import now_ms
from kirana.config import Settings, settings
from kirana.search import text

PREFIX = "kirana:search"
# A retired keyspace lives on this long for searches that began before the flip.
RETIRED_TTL_S = 60
BUILD_TTL_S = 3600
# How many versions back a finished build looks for keyspaces of builds that died half-way.
ABANDONED_LOOKBACK = 5

KIND_WEIGHT = {"brand": 3, "category": 2, "product": 1}

_lock = threading.Lock()
_clients: dict[tuple[int, str], redis.Redis] = {}


def client(cfg: Settings | None = None) -> redis.Redis:
    """The Redis that holds the index: SEARCH_REDIS_URL, or the broker's Redis by default."""
    import os

    cfg = cfg or settings()
    url = cfg.search_redis_url or cfg.redis_url
    key = (os.getpid(), url)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = redis.Redis.from_url(url, socket_timeout=cfg.redis_timeout_s,
                                         socket_connect_timeout=cfg.redis_timeout_s, decode_responses=True)
            _clients[key] = found
        return found


def root_of(db: Database) -> str:
    return f"{PREFIX}:{db.name}"


def space(root: str, version: str) -> str:
    return f"{root}:v{version}:"


# ARGV: root, mode ("live" | "build"), version (build mode), product id, document JSON ("" removes),
# suggestion prefixes JSON ({member: [[prefix, score], ...]}).
# live: apply to the current keyspace and to one being built. build: apply to `version`, only while it is
# the one being built, and only where a live write has not been first (a live write read a newer product).
_WRITE = """
local root, mode, version, pid, doc, sugg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local targets = {}
if mode == 'live' then
  local cur = redis.call('GET', root .. ':current')
  local bld = redis.call('GET', root .. ':building')
  if cur then table.insert(targets, cur) end
  if bld and bld ~= cur then table.insert(targets, bld) end
else
  if redis.call('GET', root .. ':building') ~= version then return -1 end
  local base = root .. ':v' .. version .. ':'
  if redis.call('HEXISTS', base .. 'docs', pid) == 1 or redis.call('SISMEMBER', base .. 'gone', pid) == 1 then
    return 0
  end
  targets = {version}
end
local new = nil
if doc ~= '' then new = cjson.decode(doc) end
local prefixes = nil
local building = redis.call('GET', root .. ':building')
local changed = 0
for _, v in ipairs(targets) do
  local base = root .. ':v' .. v .. ':'
  local oldraw = redis.call('HGET', base .. 'docs', pid)
  if oldraw ~= doc then
    changed = changed + 1
    if oldraw then
      local old = cjson.decode(oldraw)
      for _, w in ipairs(old.k) do redis.call('SREM', base .. 't:' .. w, pid) end
      if type(old.store_id) == 'string' then redis.call('SREM', base .. 'store:' .. old.store_id, pid) end
      for _, m in ipairs(old.s) do
        if redis.call('HINCRBY', base .. 'sc', m, -1) <= 0 then
          redis.call('HDEL', base .. 'sc', m)
          local ps = redis.call('HGET', base .. 'sgp', m)
          if ps then
            for _, p in ipairs(cjson.decode(ps)) do redis.call('ZREM', base .. 'sg:' .. p[1], m) end
            redis.call('HDEL', base .. 'sgp', m)
          end
        end
      end
    end
    if new then
      redis.call('HSET', base .. 'docs', pid, doc)
      for _, w in ipairs(new.k) do redis.call('SADD', base .. 't:' .. w, pid) end
      if type(new.store_id) == 'string' then redis.call('SADD', base .. 'store:' .. new.store_id, pid) end
      for _, m in ipairs(new.s) do
        if redis.call('HINCRBY', base .. 'sc', m, 1) == 1 then
          if not prefixes then prefixes = cjson.decode(sugg) end
          local ps = prefixes[m]
          for _, p in ipairs(ps) do redis.call('ZADD', base .. 'sg:' .. p[1], p[2], m) end
          redis.call('HSET', base .. 'sgp', m, cjson.encode(ps))
        end
      end
    else
      redis.call('HDEL', base .. 'docs', pid)
      if v == building then redis.call('SADD', base .. 'gone', pid) end
    end
  end
end
return changed
"""

# ARGV: root, mode, version, then (key suffix, member) pairs for vocab, pv: and del: sets.
_VOCAB = """
local root, mode, version = ARGV[1], ARGV[2], ARGV[3]
local targets = {}
if mode == 'live' then
  local cur = redis.call('GET', root .. ':current')
  local bld = redis.call('GET', root .. ':building')
  if cur then table.insert(targets, cur) end
  if bld and bld ~= cur then table.insert(targets, bld) end
else
  if redis.call('GET', root .. ':building') ~= version then return -1 end
  targets = {version}
end
for _, v in ipairs(targets) do
  local base = root .. ':v' .. v .. ':'
  for i = 4, #ARGV, 2 do redis.call('SADD', base .. ARGV[i], ARGV[i + 1]) end
end
return #targets
"""

# ARGV: root, version. Make `version` current if it is still the one being built; returns the old current.
_FLIP = """
local root, version = ARGV[1], ARGV[2]
if redis.call('GET', root .. ':building') ~= version then return {err = 'not building ' .. version} end
local old = redis.call('GET', root .. ':current')
redis.call('SET', root .. ':current', version)
redis.call('DEL', root .. ':building')
return old or ''
"""


_EXPIRE = """
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[1]) end
return #KEYS
"""


@dataclass(frozen=True)
class Entry:
    """One product as the index holds it."""

    id: str
    doc: str  # JSON stored in `docs`
    words: tuple[str, ...]
    suggestions: dict[str, str]  # member -> its prefixes and scores, as JSON


def line_name(product: Mapping[str, Any]) -> str:
    """The product's name without its pack size: what a shopper would pick from suggestions."""
    name = str(product.get("name") or "")
    unit = str(product.get("unit") or "")
    for suffix in (f" {unit}", f" ({unit})", f" ({unit.capitalize()})"):
        if unit and name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)].strip()
    return name


@functools.lru_cache(maxsize=50_000)
def _suggestion_prefixes(kind: str, label: str) -> str:
    """Every prefix of every word start of `label`, scored so that kind, then a match at the start, rank first."""
    normal = text.normalize(label)
    found: dict[str, int] = {}
    starts = [0] + [i + 1 for i, ch in enumerate(normal) if ch == " "]
    for start in starts:
        bonus = 1 if start == 0 else 0
        for prefix in text.prefixes(normal[start:]):
            # Lower sorts first (ZRANGE): kind weight and a start-of-label match win.
            score = -(KIND_WEIGHT[kind] * 10 + bonus * 5)
            found[prefix] = min(found.get(prefix, 0), score)
    # JSON once per label: every size of a line, in every store, suggests the same line.
    return json.dumps(sorted(found.items()), separators=(",", ":"))


def entry(product: Mapping[str, Any]) -> Entry:
    name, brand, category = str(product.get("name") or ""), str(product.get("brand") or ""), \
        str(product.get("category") or "")
    name_words, brand_words, category_words = (text.with_stems(text.words(t)) for t in (name, brand, category))
    stock = int(product.get("stock") or 0)
    doc = {
        "id": product["_id"],
        "store_id": product.get("store_id"),
        "sku": product.get("sku"),
        "name": name,
        "brand": brand or None,
        "category": category or None,
        "unit": product.get("unit"),
        "price_paise": int(product.get("price_paise") or 0),
        "mrp_paise": product.get("mrp_paise"),
        "stock": stock,
        "in_stock": stock > 0,
        "popularity": int(product.get("sold_orders") or 0),
        "changed_at_ms": int(product.get("updated_at_ms") or 0),
        "nt": name_words,
        "bt": brand_words,
        "ct": category_words,
    }
    words = tuple(sorted(set(name_words) | set(brand_words) | set(category_words)))
    suggestions: dict[str, str] = {}
    for kind, label in (("product", line_name(product)), ("brand", brand), ("category", category)):
        if label:
            suggestions[f"{kind}\x1f{label}"] = _suggestion_prefixes(kind, label)
    doc["k"] = list(words)
    doc["s"] = sorted(suggestions)
    return Entry(str(product["_id"]), json.dumps(doc, separators=(",", ":"), sort_keys=True), words, suggestions)


def vocabulary_writes(words: Iterable[str]) -> list[str]:
    """(key suffix, member) pairs, flattened, that add `words` to the vocabulary tables."""
    args: list[str] = []
    for word in words:
        args += ["vocab", word]
        for prefix in text.prefixes(word):
            args += [f"pv:{prefix}", word]
        if len(word) >= text.DELETES_MIN_LEN:
            for deleted in text.deletes(word):
                args += [f"del:{deleted}", word]
    return args


class Index:
    """Writes to the index. `mode="live"` for the indexer, `"build"` (with a version) for a full build."""

    def __init__(self, r: redis.Redis, root: str) -> None:
        self.r = r
        self.root = root
        self.current_key, self.building_key, self.seq_key = f"{root}:current", f"{root}:building", f"{root}:seq"
        self._write = r.register_script(_WRITE)
        self._vocab = r.register_script(_VOCAB)
        self._flip = r.register_script(_FLIP)
        self._expire = r.register_script(_EXPIRE)

    def current(self) -> str | None:
        found = self.r.get(self.current_key)
        return str(found) if found else None

    def apply(self, upserts: Iterable[Mapping[str, Any]], removals: Iterable[str], *, mode: str = "live",
              version: str = "") -> int:
        """Put `upserts` (product documents) in the index and take `removals` (ids) out; how many changed."""
        entries = [entry(p) for p in upserts]
        removed = list(removals)
        words = sorted({w for e in entries for w in e.words})
        new_words = self._unknown_words(words, mode, version)
        pipe = self.r.pipeline(transaction=False)
        if new_words:
            self._vocab(args=[self.root, mode, version, *vocabulary_writes(new_words)], client=pipe)
        for e in entries:
            sugg = "{" + ",".join(f"{json.dumps(m)}:{prefixes}" for m, prefixes in e.suggestions.items()) + "}"
            self._write(args=[self.root, mode, version, e.id, e.doc, sugg], client=pipe)
        for pid in removed:
            self._write(args=[self.root, mode, version, pid, "", "{}"], client=pipe)
        results = pipe.execute()
        if mode == "build" and any(r == -1 for r in results):
            raise BuildSuperseded(version)
        return sum(max(int(r), 0) for r in results[1 if new_words else 0:])

    def _unknown_words(self, words: list[str], mode: str, version: str) -> list[str]:
        if not words:
            return []
        live = (self.r.get(self.current_key), self.r.get(self.building_key))
        versions = [version] if mode == "build" else [v for v in live if v]
        unknown: set[str] = set()
        for v in versions:
            known = self.r.smismember(f"{space(self.root, str(v))}vocab", words)
            unknown |= {w for w, k in zip(words, known, strict=True) if not k}
        return sorted(unknown)

    # --- full builds ---------------------------------------------------------------------

    def begin_build(self) -> str:
        version = str(self.r.incr(self.seq_key))
        self.r.set(self.building_key, version, ex=BUILD_TTL_S)
        return version

    def finish_build(self, version: str, *, docs: int) -> str | None:
        self.r.hset(f"{space(self.root, version)}meta", mapping={"built_at_ms": now_ms(), "docs": docs})
        old = str(self._flip(args=[self.root, version])) or None
        self.r.delete(f"{space(self.root, version)}gone")
        # The replaced keyspace, and any a crashed build left between it and this one.
        first = int(old) if old else int(version) - ABANDONED_LOOKBACK
        for stale in range(max(first, int(version) - ABANDONED_LOOKBACK, 1), int(version)):
            self.retire(str(stale))
        return old

    def retire(self, version: str) -> int:
        """Let a replaced keyspace expire once searches that started on it are surely done."""
        n = 0
        cursor = 0
        while True:
            cursor, keys = self.r.scan(cursor, match=f"{space(self.root, version)}*", count=5000)
            if keys:
                # One script call per page: an EXPIRE reply per key costs more than the EXPIRE.
                n += int(self._expire(keys=keys, args=[RETIRED_TTL_S]))
            if cursor == 0:
                return n

    def abandon_build(self, version: str) -> None:
        if self.r.get(self.building_key) == version:
            self.r.delete(self.building_key)
        self.retire(version)

    def stats(self) -> dict[str, Any]:
        version = self.current()
        if version is None:
            return {"version": None, "docs": 0, "built_at_ms": None, "building": self.r.get(self.building_key)}
        meta = self.r.hgetall(f"{space(self.root, version)}meta")
        return {"version": version, "docs": self.r.hlen(f"{space(self.root, version)}docs"),
                "built_at_ms": int(meta["built_at_ms"]) if meta.get("built_at_ms") else None,
                "building": self.r.get(self.building_key)}


class BuildSuperseded(RuntimeError):
    """Another build took over (or the build marker expired): this one stops."""


BUILD_BATCH = 500
# The fields kirana.search.dirty marks a product with (defined here, where both modules can see them).
DIRTY_FIELD = "search_dirty_ms"
REV_FIELD = "search_rev"


def clear_marks(db: Database, marked: list[tuple[str, Any]]) -> int:
    """Unmark products whose indexed state is their latest: unless changed again since (`search_rev` moved on)."""
    if not marked:
        return 0
    return collections.bulk_update(
        db[collections.PRODUCTS],
        [pymongo.UpdateOne({"_id": pid, REV_FIELD: rev}, {"$unset": {DIRTY_FIELD: ""}}) for pid, rev in marked],
    ).modified


def rebuild(db: Database, r: redis.Redis, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Build a fresh keyspace from every product and make it current; returns what was built."""
    index = Index(r, root_of(db))
    started = now_ms()
    total = db[collections.PRODUCTS].estimated_document_count()
    version = index.begin_build()
    done = 0
    # Marked products the build read: their marks are cleared once the build is what searches see.
    marked: list[tuple[str, Any]] = []
    try:
        batch: list[dict[str, Any]] = []
        for product in db[collections.PRODUCTS].find({}, {"holds": 0, "restocked": 0}).sort("_id", 1):
            batch.append(product)
            if product.get(DIRTY_FIELD):
                marked.append((product["_id"], product.get(REV_FIELD)))
            if len(batch) == BUILD_BATCH:
                index.apply(batch, [], mode="build", version=version)
                done += len(batch)
                batch = []
                if progress:
                    progress(done, total)
        if batch:
            index.apply(batch, [], mode="build", version=version)
            done += len(batch)
            if progress:
                progress(done, total)
        docs = int(r.hlen(f"{space(index.root, version)}docs"))
        old = index.finish_build(version, docs=docs)
    except BaseException:
        index.abandon_build(version)
        raise
    clear_marks(db, marked)
    return {"version": version, "replaced": old, "products": done, "docs": docs,
            "duration_ms": now_ms() - started}
