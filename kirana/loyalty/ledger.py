"""The points ledger and the cached balance.

`loyalty_ledger` is insert-only: one entry per (order, rule), id
`<order id>:<rule>`, and its reversal `<order id>:<rule>:reversal`, so a
replayed award or reversal inserts nothing (DuplicateKeyError = done before).

The balance in `loyalty_accounts` is a cache of the ledger's sum. Applying an
entry is one guarded update of the account: `$inc` the balance and set
`applied.<entry id>` only where that key is absent. A crash between the
ledger insert and the account update is repaired by the next run of the same
step (a replayed task, the sweep, a redelivered order), which finds the entry,
finds it unapplied, and applies it once. The applied-ids map grows by one key
per entry (a few dozen bytes); at thousands of orders per customer it stays far
below MongoDB's document limit.

Redemption debits first (`balance >= n` in the filter, one
find_one_and_update) and writes its ledger entry second: the order being
processed holds a lease and its run is retried until it ends, so an
interrupted redemption is always completed by the same order's next run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import catalog
from kirana import db as collections
from kirana.clock import now_ms, utcnow
from kirana.loyalty import rules as rules_mod
from kirana.loyalty.boards import Boards, city_id
from kirana.stock import product_id

LEDGER = collections.LOYALTY_LEDGER
ACCOUNTS = collections.LOYALTY_ACCOUNTS

EARN = "earn"
REVERSAL = "reversal"
REDEEM = "redeem"
REDEEM_RETURN = "redeem_return"


def _ensure_account(db: Database, customer_id: str) -> None:
    # DuplicateKeyError: two first entries at once, and the other created it.
    with contextlib.suppress(DuplicateKeyError):
        db[ACCOUNTS].update_one({"_id": customer_id},
                                {"$setOnInsert": {"balance": 0, "applied": {}, "created_at": utcnow()}},
                                upsert=True)


def apply_to_account(db: Database, entry: Mapping[str, Any]) -> bool:
    """Add an entry to its customer's balance unless it was added before; True when added now."""
    for _ in range(2):
        done = db[ACCOUNTS].update_one(
            {"_id": entry["customer_id"], f"applied.{entry['_id']}": {"$exists": False}},
            {"$inc": {"balance": int(entry["points"])},
             "$set": {f"applied.{entry['_id']}": int(entry["created_at_ms"]), "updated_at_ms": now_ms()}},
        )
        if done.matched_count or db[ACCOUNTS].find_one({"_id": entry["customer_id"]}, {"_id": 1}):
            return done.modified_count == 1
        _ensure_account(db, entry["customer_id"])  # the customer's first entry: create the account, then apply
    return False


def record(db: Database, boards: Boards | None, entry: dict[str, Any]) -> bool:
    """Insert an entry once, and make sure it is in the balance and on the boards; True when inserted now."""
    try:
        db[LEDGER].insert_one(entry)
        inserted = True
    except DuplicateKeyError:
        entry = db[LEDGER].find_one({"_id": entry["_id"]}) or entry
        inserted = False
    apply_to_account(db, entry)
    if boards is not None and entry.get("board"):
        boards.apply(entry)
    return inserted


def _entry(order: Mapping[str, Any], rule: str, kind: str, points: int, *, at_ms: int, city: str | None,
           board: bool, suffix: str = "") -> dict[str, Any]:
    created = now_ms()
    return {
        "_id": f"{order['_id']}:{rule}{suffix}",
        "customer_id": order["customer_id"],
        "order_id": order["_id"],
        "store_id": order["store_id"],
        "city": city,
        "rule": rule,
        "kind": kind,
        "points": points,
        # Counts on leaderboards (earned and reversed points, not points spent).
        "board": board,
        # Business time: when the order was confirmed; decides the board's period.
        "at_ms": at_ms,
        "created_at_ms": created,
        "created_at": utcnow(),
    }


# A store's city, per process: read once per store, as a store does not move between cities.
_CITIES: dict[str, str | None] = {}


def store_city(db: Database, store_id: str) -> str | None:
    if store_id not in _CITIES:
        store = db[collections.STORES].find_one({"_id": store_id}, {"city": 1})
        if store is None:
            return None
        _CITIES[store_id] = city_id(store["city"]) if store.get("city") else None
    return _CITIES[store_id]


def confirmed_at_ms(db: Database, order: Mapping[str, Any]) -> int:
    event = order.get("history", {}).get("confirmed")
    return int(event["at_ms"]) if event else int(order.get("paid_at_ms") or order["updated_at_ms"])


def _categories(db: Database, order: Mapping[str, Any]) -> dict[str, str]:
    by_product = catalog.line_categories(db, [order])
    return {line["sku"]: category for line in order.get("lines", [])
            if (category := by_product.get(product_id(order["store_id"], line["sku"]))) is not None}


def _is_first_order(db: Database, order: Mapping[str, Any]) -> bool:
    """Whether this is the customer's first order to earn: the first to claim it wins, once."""
    account = db[ACCOUNTS].find_one({"_id": order["customer_id"]}, {"first_order_id": 1})
    if account is not None and account.get("first_order_id"):
        return bool(account["first_order_id"] == order["_id"])
    _ensure_account(db, order["customer_id"])
    db[ACCOUNTS].update_one({"_id": order["customer_id"], "first_order_id": {"$exists": False}},
                            {"$set": {"first_order_id": order["_id"], "updated_at_ms": now_ms()}})
    account = db[ACCOUNTS].find_one({"_id": order["customer_id"]}, {"first_order_id": 1})
    return bool(account) and account.get("first_order_id") == order["_id"]


def earn(db: Database, boards: Boards | None, order: Mapping[str, Any], rules: rules_mod.Rules) -> list[str]:
    """Award a confirmed order's points (idempotent); ids of entries inserted now."""
    earned = rules.earned(order, _categories(db, order), first=_is_first_order(db, order))
    at, city = confirmed_at_ms(db, order), store_city(db, order["store_id"])
    added = []
    for rule, points in earned.items():
        entry = _entry(order, rule, EARN, points, at_ms=at, city=city, board=True)
        if record(db, boards, entry):
            added.append(entry["_id"])
    return added


def reverse(db: Database, boards: Boards | None, order: Mapping[str, Any]) -> list[str]:
    """Take back what an order that did not go through earned, and give back what it spent (idempotent)."""
    added = []
    for entry in list(db[LEDGER].find({"order_id": order["_id"], "kind": EARN})):
        reversal = {**entry, "_id": f"{entry['_id']}:reversal", "kind": REVERSAL, "points": -int(entry["points"]),
                    "created_at_ms": now_ms(), "created_at": utcnow()}
        if record(db, boards, reversal):
            added.append(reversal["_id"])
    if give_back(db, order):
        added.append(f"{order['_id']}:{rules_mod.REDEEM}:reversal")
    return added


# --- redemption --------------------------------------------------------------------------------


def redeem(db: Database, order: Mapping[str, Any]) -> bool:
    """Debit the points an order redeems; False when the balance is short. Idempotent per order."""
    points = int(order.get("redeem_points") or 0)
    entry = _entry(order, rules_mod.REDEEM, REDEEM, -points, at_ms=now_ms(), city=None, board=False)
    _ensure_account(db, order["customer_id"])
    debited = db[ACCOUNTS].find_one_and_update(
        {"_id": order["customer_id"], "balance": {"$gte": points}, f"applied.{entry['_id']}": {"$exists": False}},
        {"$inc": {"balance": -points},
         "$set": {f"applied.{entry['_id']}": entry["created_at_ms"], "updated_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if debited is None and not _applied(db, order["customer_id"], entry["_id"]):
        return False
    with contextlib.suppress(DuplicateKeyError):
        db[LEDGER].insert_one(entry)
    return True


def _applied(db: Database, customer_id: str, entry_id: str) -> bool:
    found = db[ACCOUNTS].find_one({"_id": customer_id, f"applied.{entry_id}": {"$exists": True}}, {"_id": 1})
    return found is not None


def give_back(db: Database, order: Mapping[str, Any]) -> bool:
    """Return an order's redeemed points once, if they were debited; True when returned now."""
    points = int(order.get("redeem_points") or 0)
    spent_id = f"{order['_id']}:{rules_mod.REDEEM}"
    if not points or not _applied(db, order["customer_id"], spent_id):
        return False
    spent = _entry(order, rules_mod.REDEEM, REDEEM, -points, at_ms=now_ms(), city=None, board=False)
    with contextlib.suppress(DuplicateKeyError):  # an interrupted redemption left the debit without its entry
        db[LEDGER].insert_one(spent)
    back = _entry(order, rules_mod.REDEEM, REDEEM_RETURN, points, at_ms=now_ms(), city=None, board=False,
                  suffix=":reversal")
    return record(db, None, back)


# --- reading ---------------------------------------------------------------------------------


def balance(db: Database, customer_id: str) -> int:
    account = db[ACCOUNTS].find_one({"_id": customer_id}, {"balance": 1})
    return int(account["balance"]) if account else 0


def ledger_sum(db: Database, customer_id: str) -> int:
    return sum(int(e["points"]) for e in db[LEDGER].find({"customer_id": customer_id}, {"points": 1}))


def recent(db: Database, customer_id: str, limit: int = 20) -> list[dict[str, Any]]:
    found = (db[LEDGER].find({"customer_id": customer_id},
                             {"_id": 1, "order_id": 1, "rule": 1, "kind": 1, "points": 1, "created_at_ms": 1})
             .sort("created_at_ms", -1).limit(limit))
    return [{"id": e["_id"], "order_id": e["order_id"], "rule": e["rule"], "kind": e["kind"],
             "points": e["points"], "at_ms": e["created_at_ms"]} for e in found]
