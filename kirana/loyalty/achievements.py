"""Achievements: a small rule set over a customer's confirmed orders, each awarded once.

An achievement is a document `<customer>:<achievement>` in `achievements`, so
one insert decides it however many award tasks race. It is never taken back:
a cancelled order does not undo "first order". `notified_at_ms` is set once
its notification is enqueued; an award whose notification was never enqueued
(a crash in between) is notified by the customer's next evaluation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import catalog
from kirana import db as collections
from kirana.clock import now_ms, utcnow
from kirana.loyalty.boards import IST

ACHIEVEMENTS = collections.ACHIEVEMENTS
# Orders that count: confirmed and still going (or gone) to the customer.
COUNTED = ("confirmed", "out_for_delivery", "delivered")


@dataclass(frozen=True)
class Done:
    """One confirmed order as the rules see it."""

    order_id: str
    at_ms: int
    total_paise: int
    categories: frozenset[str]


@dataclass(frozen=True)
class Achievement:
    id: str
    title: str
    title_hi: str
    reached: Callable[[Sequence[Done]], bool]


def _ist_day(at_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(at_ms / 1000, IST).date()


def _best_month_paise(orders: Sequence[Done]) -> int:
    months: dict[tuple[int, int], int] = {}
    for o in orders:
        day = _ist_day(o.at_ms)
        months[(day.year, day.month)] = months.get((day.year, day.month), 0) + o.total_paise
    return max(months.values(), default=0)


def longest_streak(orders: Sequence[Done]) -> int:
    """Longest run of consecutive days (IST) with at least one order."""
    days = sorted({_ist_day(o.at_ms) for o in orders})
    best = run = 0
    previous: dt.date | None = None
    for day in days:
        run = run + 1 if previous is not None and day - previous == dt.timedelta(days=1) else 1
        best = max(best, run)
        previous = day
    return best


RULES: tuple[Achievement, ...] = (
    Achievement("first_order", "First order", "पहला ऑर्डर", lambda os: len(os) >= 1),
    Achievement("tenth_order", "Ten orders", "दस ऑर्डर", lambda os: len(os) >= 10),
    Achievement("big_month", "₹5,000 in a month", "एक महीने में ₹5,000",
                lambda os: _best_month_paise(os) >= 500_000),
    Achievement("week_streak", "7-day streak", "लगातार 7 दिन", lambda os: longest_streak(os) >= 7),
    Achievement("explorer", "5 categories tried", "5 श्रेणियाँ आज़माईं",
                lambda os: len(frozenset().union(*(o.categories for o in os))) >= 5),
)
BY_ID: Mapping[str, Achievement] = {a.id: a for a in RULES}


def history(db: Database, customer_id: str) -> list[Done]:
    orders = list(db[collections.ORDERS].find(
        {"customer_id": customer_id}, {"status": 1, "total_paise": 1, "store_id": 1, "lines": 1, "created_at_ms": 1}))
    orders = [o for o in orders if o["status"] in COUNTED]
    categories = catalog.line_categories(db, orders)
    return [Done(o["_id"], int(o["created_at_ms"]), int(o.get("total_paise") or 0),
                 frozenset(c for line in o.get("lines", [])
                           if (c := categories.get(f"{o['store_id']}:{line['sku']}")))) for o in orders]


def evaluate(db: Database, customer_id: str, *, order_id: str | None = None) -> list[dict[str, Any]]:
    """Award what the customer has reached; returns the achievements still to be notified."""
    have = {a["achievement"]: a for a in earned(db, customer_id)}
    if all(a.id in have for a in RULES):
        return [a for a in have.values() if not a.get("notified_at_ms")]
    done = history(db, customer_id)
    added = False
    for achievement in RULES:
        if achievement.id in have or not achievement.reached(done):
            continue
        added = True
        with contextlib.suppress(DuplicateKeyError):
            db[ACHIEVEMENTS].insert_one({
                "_id": f"{customer_id}:{achievement.id}", "customer_id": customer_id,
                "achievement": achievement.id, "order_id": order_id, "at_ms": now_ms(), "at": utcnow(),
            })
    return [a for a in (earned(db, customer_id) if added else have.values()) if not a.get("notified_at_ms")]


def mark_notified(db: Database, achievement_doc_id: str) -> None:
    db[ACHIEVEMENTS].update_one({"_id": achievement_doc_id, "notified_at_ms": {"$exists": False}},
                                {"$set": {"notified_at_ms": now_ms()}})


def earned(db: Database, customer_id: str) -> list[dict[str, Any]]:
    return sorted(db[ACHIEVEMENTS].find({"customer_id": customer_id}), key=lambda a: a["at_ms"])


def view(doc: Mapping[str, Any]) -> dict[str, Any]:
    rule = BY_ID.get(doc["achievement"])
    return {"id": doc["achievement"], "title": rule.title if rule else doc["achievement"],
            "title_hi": rule.title_hi if rule else doc["achievement"], "at_ms": doc["at_ms"],
            "order_id": doc.get("order_id")}
