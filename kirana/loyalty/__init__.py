"""Loyalty: points from confirmed orders, redemption at checkout, achievements, leaderboards.

`sync_order` brings an order's loyalty in line with its status, and is the
one thing the leaderboards queue runs per order: a confirmed order earns
(and may reach achievements), an order that did not go through (cancelled,
refunded, rejected, expired) has its points reversed and its redeemed points
given back. Every step is idempotent, so the task may run any number of times,
in any order with the order's other tasks; `loyalty_state` on the order
records the status it was last synced for, for the sweep.

Modules: `rules` (what earns), `ledger` (entries and balance), `achievements`,
`boards` (Redis leaderboards). CLI: `python -m kirana.loyalty refresh`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from kirana import db as collections
from kirana import orders
from kirana.loyalty import achievements, boards, ledger
from kirana.loyalty.rules import Rules
from kirana.orders import Status

EARNING = frozenset({Status.CONFIRMED, Status.OUT_FOR_DELIVERY, Status.DELIVERED})
GONE = frozenset({Status.CANCELLED, Status.REFUND_PENDING, Status.REFUNDED, Status.REJECTED, Status.EXPIRED})


@dataclass
class Synced:
    order_id: str
    status: str
    entries: list[str] = field(default_factory=list)
    # Achievements to notify: (achievement document id, achievement id).
    achievements: list[tuple[str, str]] = field(default_factory=list)


def sync_order(db: Database, lb: boards.Boards | None, order_id: str, rules: Rules | None = None) -> Synced:
    rules = rules or Rules.from_settings()
    order = orders.get(db, order_id)
    result = Synced(order_id, order["status"])
    if order["status"] in EARNING:
        result.entries += ledger.earn(db, lb, order, rules)
        for doc in achievements.evaluate(db, order["customer_id"], order_id=order_id):
            result.achievements.append((doc["_id"], doc["achievement"]))
        if _mark_synced(db, order):
            return result
        # Cancelled while we awarded: the cancel's own sync may have found nothing to reverse yet.
        order = orders.get(db, order_id)
    if order["status"] in GONE:
        result.entries += ledger.reverse(db, lb, order)
    result.status = order["status"]
    _mark_synced(db, order)
    return result


def _mark_synced(db: Database, order: Mapping[str, Any]) -> bool:
    """Record that loyalty is in step with the order's status; False when the status moved on meanwhile."""
    marked = db[collections.ORDERS].update_one({"_id": order["_id"], "status": order["status"]},
                                               {"$set": {"loyalty_state": order["status"]}})
    return marked.matched_count == 1


def unsynced(db: Database, *, since_ms: int, until_ms: int, limit: int) -> list[str]:
    """Orders changed between `since_ms` and `until_ms` whose loyalty was not synced for their status (a lost task)."""
    found = db[collections.ORDERS].find({"updated_at_ms": {"$gte": since_ms, "$lt": until_ms}},
                                        {"status": 1, "loyalty_state": 1}).limit(limit)
    return [o["_id"] for o in found
            if o["status"] in EARNING | GONE and o.get("loyalty_state") != o["status"]]


def display_names(db: Database, user_ids: list[str]) -> dict[str, str]:
    """Names to show on a board: the user's display name, else a masked email (never the address)."""
    found = db["users"].find({"_id": {"$in": user_ids}}, {"display_name": 1, "email": 1}) if user_ids else []
    names = {}
    for user in found:
        local = str(user.get("email", "")).split("@", 1)[0]
        names[user["_id"]] = user.get("display_name") or (local[:2] + "***" if local else "customer")
    return names


def masked_id(user_id: str) -> str:
    """A short tag that tells board entries apart without naming the account ("…7Q2F")."""
    return "…" + user_id[-4:]


def known_scope(db: Database, scope: str, scope_id: str) -> bool:
    """Whether a board's store or city exists: a read must not create boards for made-up ids."""
    if scope == "store":
        return db[collections.STORES].find_one({"_id": scope_id}, {"_id": 1}) is not None
    return any(boards.city_id(s.get("city", "")) == scope_id for s in db[collections.STORES].find({}, {"city": 1}))


def board_view(db: Database, lb: boards.Boards, scope: str, scope_id: str, period: str, *, limit: int,
               now_ms: int, margin_ms: int) -> dict[str, Any]:
    name = boards.bucket(period, now_ms)
    key = boards.key(scope, scope_id, period, name)
    if not lb.is_built(key):
        boards.rebuild(db, lb, (scope, scope_id, period, name), now_ms=now_ms, margin_ms=margin_ms)
    top = lb.top(key, limit)
    names = display_names(db, [m for m, _ in top])
    return {"scope": scope, "scope_id": scope_id, "period": period, "bucket": name,
            "entries": [{"rank": i + 1, "customer_id": m, "name": names.get(m, "customer"), "points": p}
                        for i, (m, p) in enumerate(top)]}


def summary(db: Database, lb: boards.Boards, customer_id: str, *, now_ms: int, margin_ms: int,
            recent: int = 20) -> dict[str, Any]:
    """A customer's balance, recent entries, achievements and rank on each board they are on."""
    scopes: set[tuple[str, str]] = set()
    for entry in db[ledger.LEDGER].find({"customer_id": customer_id, "board": True}, {"store_id": 1, "city": 1}):
        scopes.update(boards.scopes_of(entry))
    ranks = []
    for scope, sid in sorted(scopes):
        for period in boards.PERIODS:
            name = boards.bucket(period, now_ms)
            key = boards.key(scope, sid, period, name)
            if not lb.is_built(key):
                boards.rebuild(db, lb, (scope, sid, period, name), now_ms=now_ms, margin_ms=margin_ms)
            standing = lb.standing(key, customer_id)
            if standing:
                ranks.append({"scope": scope, "scope_id": sid, "period": period, "bucket": name,
                              "rank": standing[0], "points": standing[1]})
    return {
        "customer_id": customer_id,
        "balance": ledger.balance(db, customer_id),
        "point_value_paise": Rules.from_settings().point_value_paise,
        "recent": ledger.recent(db, customer_id, recent),
        "achievements": [achievements.view(a) for a in achievements.earned(db, customer_id)],
        "ranks": ranks,
    }


def achievement_params(achievement_id: str) -> Mapping[str, str]:
    rule = achievements.BY_ID[achievement_id]
    return {"achievement": rule.title, "achievement_hi": rule.title_hi}
