"""Leaderboards: Redis sorted sets per store and per city, for the day, week, month and all time.

A board is `kirana:lb:<scope>:<scope id>:<period>:<bucket>` (bucket: `2026-11-28`,
`2026-W48`, `2026-11`, `all`; periods are Indian Standard Time). Points earned
and reversed (never points spent) count; a member is a customer id.

Score: `points * 2^31 + (2^31 - 1 - t)`, where t is the latest business time
(the order's confirmation, in seconds since 2024-01-01) of the entries that
make up the member's points on that board. Equal points therefore rank the
member who got there earlier first, and both parts are a sum and a max over
the ledger, so the incremental board equals a rebuild whatever order the
entries arrived in. A Redis score is a double: exact while |points| < 2^22.
Members whose points fall to 0 stay (their time part must survive for that
equality) and are left out of reads.

Every board has two companions with its expiry: `<board>:built`, the ledger
watermark (`created_at_ms`) the last rebuild covered, and `<board>:recent`,
the entries applied incrementally since then (entry id -> its delta).

- An incremental apply (one Lua call) skips an entry the rebuild covered
  (created at or before the watermark) and an entry already in `recent`, so
  replays and a rebuild racing with live updates never count twice.
- A refresh reads the ledger up to `now - margin` into temporary keys, then
  one Lua call RENAMEs every temporary key over its board, sets the watermarks,
  and re-applies from `recent` what is newer than the watermark. Readers see
  the old board or the new one, never a half-built one.
- A board without `:built` (Redis lost it, or it was never refreshed) is
  rebuilt from the ledger on its first read.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from pymongo.database import Database

from kirana import db as collections

PERIODS = ("day", "week", "month", "all")
SCOPES = ("store", "city")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
SCALE = 2**31
EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z
PREFIX = "kirana:lb"
LAST_REFRESH_KEY = "kirana:lb:last_refresh"
_CHUNK = 2000

# Shared by both scripts: add `points` at time part `t` to `member` of `board`.
_BUMP = """
local SCALE = 2147483648
local function bump(board, member, points, t)
  local s = redis.call('ZSCORE', board, member)
  local p, tp = 0, -1
  if s then
    s = tonumber(s)
    p = math.floor(s / SCALE)
    tp = SCALE - 1 - (s - p * SCALE)
  end
  p = p + points
  if t > tp then tp = t end
  redis.call('ZADD', board, string.format('%.0f', p * SCALE + (SCALE - 1 - tp)), member)
end
local function keep_until(key, at)
  if at > 0 then redis.call('EXPIREAT', key, at) end
end
"""

# KEYS: boards. ARGV: entry id, created_at_ms, member, points, t, then one expire-at per board.
_APPLY = _BUMP + """
local eid, created, member, points, t = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local applied = 0
for i, board in ipairs(KEYS) do
  local w = tonumber(redis.call('GET', board .. ':built') or '-1')
  if created > w then
    local value = ARGV[2] .. ':' .. ARGV[4] .. ':' .. ARGV[5] .. ':' .. member
    if redis.call('HSETNX', board .. ':recent', eid, value) == 1 then
      bump(board, member, points, t)
      applied = applied + 1
    end
  end
  local at = tonumber(ARGV[5 + i])
  keep_until(board, at)
  keep_until(board .. ':recent', at)
end
return applied
"""

# KEYS: pairs of (temporary key, board). ARGV: watermark, then one expire-at per pair.
_SWAP = _BUMP + """
local w = tonumber(ARGV[1])
for i = 1, #KEYS, 2 do
  local tmp, board = KEYS[i], KEYS[i + 1]
  if redis.call('EXISTS', tmp) == 1 then
    redis.call('RENAME', tmp, board)
  else
    redis.call('DEL', board)
  end
  redis.call('SET', board .. ':built', ARGV[1])
  local recent = redis.call('HGETALL', board .. ':recent')
  for j = 1, #recent, 2 do
    local created, points, t, member = string.match(recent[j + 1], '^(-?%d+):(-?%d+):(-?%d+):(.+)$')
    if tonumber(created) > w then
      bump(board, member, tonumber(points), tonumber(t))
    else
      redis.call('HDEL', board .. ':recent', recent[j])
    end
  end
  local at = tonumber(ARGV[1 + (i + 1) / 2])
  keep_until(board, at)
  keep_until(board .. ':built', at)
  keep_until(board .. ':recent', at)
end
return #KEYS / 2
"""


def bucket(period: str, at_ms: int) -> str:
    day = dt.datetime.fromtimestamp(at_ms / 1000, IST).date()
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "all":
        return "all"
    raise ValueError(f"unknown period {period!r}")


def bucket_range_ms(period: str, name: str) -> tuple[int, int] | None:
    """[start, end) of a bucket in epoch ms; None for all time."""
    if period == "all":
        return None
    if period == "day":
        start = dt.datetime.fromisoformat(name).replace(tzinfo=IST)
        end = start + dt.timedelta(days=1)
    elif period == "week":
        year, week = name.split("-W")
        start = dt.datetime.fromisocalendar(int(year), int(week), 1).replace(tzinfo=IST)
        end = start + dt.timedelta(days=7)
    else:
        year, month = (int(part) for part in name.split("-"))
        start = dt.datetime(year, month, 1, tzinfo=IST)
        end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=IST)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def expire_at(period: str, name: str) -> int:
    """When a period board goes: one period after its own ends (0 = never)."""
    span = bucket_range_ms(period, name)
    if span is None:
        return 0
    start, end = span
    return (end + (end - start)) // 1000


def key(scope: str, scope_id: str, period: str, name: str) -> str:
    return f"{PREFIX}:{scope}:{scope_id}:{period}:{name}"


def time_part(at_ms: int) -> int:
    return min(max(at_ms // 1000 - EPOCH_S, 0), SCALE - 1)


def encode(points: int, at_ms: int) -> int:
    return points * SCALE + (SCALE - 1 - time_part(at_ms))


def decode(score: float) -> int:
    return int(score) // SCALE


def city_id(city: str) -> str:
    """A city's id on boards and in the API: `Bengaluru` -> `bengaluru`."""
    return "-".join(city.lower().split())


def scopes_of(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = [("store", entry["store_id"])]
    if entry.get("city"):
        found.append(("city", entry["city"]))
    return found


def boards_of(entry: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(board, expire-at) of every board an entry counts on."""
    return [(key(scope, sid, period, bucket(period, entry["at_ms"])), expire_at(period, bucket(period, entry["at_ms"])))
            for scope, sid in scopes_of(entry) for period in PERIODS]


class Boards:
    """The Redis side: apply entries, refresh, read."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._apply = r.register_script(_APPLY)
        self._swap = r.register_script(_SWAP)

    def apply(self, entry: Mapping[str, Any]) -> int:
        """Count one ledger entry on its boards (idempotent); returns on how many it was new."""
        boards = boards_of(entry)
        args = [entry["_id"], int(entry["created_at_ms"]), entry["customer_id"], int(entry["points"]),
                time_part(int(entry["at_ms"])), *(at for _, at in boards)]
        return int(self._apply(keys=[b for b, _ in boards], args=args))

    def swap(self, built: Mapping[str, Mapping[str, tuple[int, int]]], watermark_ms: int) -> None:
        """Put freshly built boards in place atomically. `built`: board -> member -> (points, max at_ms)."""
        token = uuid.uuid4().hex[:12]
        pairs: list[tuple[str, str, int]] = []
        for board, members in built.items():
            tmp = f"{board}:build:{token}"
            # One pipeline per board: the ZADDs of a million-member refresh are round trips otherwise.
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(tmp)
            items = list(members.items())
            for start in range(0, len(items), _CHUNK):
                pipe.zadd(tmp, {m: encode(p, at) for m, (p, at) in items[start:start + _CHUNK]})
            pipe.expire(tmp, 3600)  # a refresh that dies leaves no litter for long
            pipe.execute()
            _, period, name = board.rsplit(":", 2)
            pairs.append((tmp, board, expire_at(period, name)))
        keys = [k for tmp, board, _ in pairs for k in (tmp, board)]
        if keys:
            self._swap(keys=keys, args=[watermark_ms, *(at for _, _, at in pairs)])

    def top(self, board: str, limit: int) -> list[tuple[str, int]]:
        found = self.r.zrevrangebyscore(board, "+inf", SCALE, start=0, num=limit, withscores=True)
        return [(m.decode() if isinstance(m, bytes) else m, decode(s)) for m, s in found]

    def standing(self, board: str, member: str) -> tuple[int, int] | None:
        """(rank from 1, points) of a member with points on `board`."""
        score = self.r.zscore(board, member)
        if score is None or decode(score) < 1:
            return None
        rank = self.r.zrevrank(board, member)
        return (int(rank) + 1, decode(score)) if rank is not None else None

    def is_built(self, board: str) -> bool:
        return bool(self.r.exists(f"{board}:built"))


@dataclass
class Refreshed:
    boards: int = 0
    entries: int = 0
    seconds: float = 0.0
    members: int = 0
    per_board: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0


_FIELDS = {"_id": 0, "customer_id": 1, "store_id": 1, "city": 1, "points": 1, "at_ms": 1}


def _aggregate(entries: Iterable[Mapping[str, Any]], wanted: Mapping[str, str]) -> tuple[
        dict[str, dict[str, list[int]]], int]:
    """Sum points and take the latest time per (board, member). `wanted`: period -> bucket to build."""
    # Bucket bounds once, not a datetime per entry: this loop runs a million times.
    spans = [(period, name, bucket_range_ms(period, name)) for period, name in wanted.items()]
    built: dict[str, dict[str, list[int]]] = {}
    count = 0
    for entry in entries:
        count += 1
        at, points, member = int(entry["at_ms"]), int(entry["points"]), entry["customer_id"]
        for scope, sid in scopes_of(entry):
            for period, name, span in spans:
                if span is not None and not span[0] <= at < span[1]:
                    continue
                board = key(scope, sid, period, name)
                members = built.get(board)
                if members is None:
                    members = built[board] = {}
                acc = members.get(member)
                if acc is None:
                    members[member] = [points, at]
                else:
                    acc[0] += points
                    acc[1] = max(acc[1], at)
    return built, count


def _board_entries(db: Database, query: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from db[collections.LOYALTY_LEDGER].find({"board": True, **query}, _FIELDS, batch_size=10_000)


def refresh(db: Database, boards: Boards, *, now_ms: int, margin_ms: int) -> Refreshed:
    """Rebuild every store and city board of the current day, week and month, and all time."""
    started = time.perf_counter()
    watermark = now_ms - margin_ms
    wanted = {period: bucket(period, now_ms) for period in PERIODS}
    built, count = _aggregate(_board_entries(db, {"created_at_ms": {"$lte": watermark}}), wanted)
    boards.swap({b: {m: (p, at) for m, (p, at) in ms.items()} for b, ms in built.items()}, watermark)
    boards.r.set(LAST_REFRESH_KEY, f"{time.time():.3f}")
    return Refreshed(boards=len(built), entries=count, seconds=time.perf_counter() - started,
                     members=sum(len(m) for m in built.values()), per_board={b: len(m) for b, m in built.items()})


def rebuild(db: Database, boards: Boards, board: tuple[str, str, str, str], *, now_ms: int,
            margin_ms: int) -> None:
    """Rebuild one board, (scope, scope id, period, bucket), from the ledger (a board Redis lost, found on a read)."""
    scope, scope_id, period, name = board
    watermark = now_ms - margin_ms
    query: dict[str, Any] = {("store_id" if scope == "store" else "city"): scope_id,
                             "created_at_ms": {"$lte": watermark}}
    span = bucket_range_ms(period, name)
    if span is not None:
        query["at_ms"] = {"$gte": span[0], "$lt": span[1]}
    built, _ = _aggregate(_board_entries(db, query), {period: name})
    target = key(scope, scope_id, period, name)
    members = built.get(target, {})
    boards.swap({target: {m: (p, at) for m, (p, at) in members.items()}}, watermark)


def last_refresh(r: redis.Redis) -> float | None:
    raw = r.get(LAST_REFRESH_KEY)
    return float(raw) if raw is not None else None
