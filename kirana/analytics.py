"""Store analytics: a read model of each store's sales, rebuilt exactly from its orders.

Two kinds of documents in `store_analytics`, each recomputed, never `$inc`ed,
so replaying an update (a redelivered task, an order seen twice) changes nothing:

- `order:<order id>`: what one order contributes (its store, local day and
  hour, status, total when sold, lines with categories, customer, payment
  method), rewritten from the order whenever it changes;
- `day:<store>:<YYYY-MM-DD>`: a store's day, summed from the day's
  contributions whenever one of them changed.

A query for a range merges its days. "Sold" means confirmed, out for delivery or
delivered (cancelled and refunded orders are counted by status, not in sales).
Days and hours are the store's local time (ANALYTICS_TIMEZONE). Orders reach
the model two ways: ids marked dirty as their status changes (tasks.base), and a
scan of orders by `updated_at_ms` from a stored cursor (the beat job's safety
net, resumable, in bounded batches). Free of Flask and Celery.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.database import Database

from kirana import catalog, stock
from kirana import db as collections
from kirana.clock import now_ms
from kirana.orders import Status

STORE_ANALYTICS = "store_analytics"
SOLD = frozenset({Status.CONFIRMED, Status.OUT_FOR_DELIVERY, Status.DELIVERED})
CURSOR_ID = "cursor"
# Orders changed less than this long ago are left to the next scan: a write stamped a moment
# earlier (another process's clock) may not be visible yet.
SCAN_LAG_MS = 5_000
# A store's day is summed again from all its orders' contributions at most this often: the sum
# reads every order of the day, so summing it per batch cost O(orders that day) per batch
# (`make soak`, all orders in one store: nx-27017's rate fell by a quarter over 10 minutes).
RESUM_EVERY_MS = 10_000
TOP = 10


def local_day_hour(at_ms: int, tz: ZoneInfo) -> tuple[str, int]:
    local = dt.datetime.fromtimestamp(at_ms / 1000, tz)
    return local.date().isoformat(), local.hour


def contribution(order: Mapping[str, Any], categories: Mapping[str, str], tz: ZoneInfo) -> dict[str, Any]:
    """What one order adds to its store's day (categories: sku -> category)."""
    day, hour = local_day_hour(int(order["created_at_ms"]), tz)
    sold = order["status"] in SOLD
    lines = [{"sku": line["sku"], "name": line.get("name", line["sku"]),
              "category": categories.get(line["sku"], "uncategorised"), "qty": int(line["qty"]),
              "line_total_paise": int(line["line_total_paise"])} for line in order.get("lines", [])] if sold else []
    return {
        "kind": "order", "order_id": order["_id"], "store_id": order["store_id"], "day": day, "hour": hour,
        "status": order["status"], "sold": sold, "total_paise": int(order.get("total_paise") or 0) if sold else 0,
        "customer_id": order["customer_id"], "payment_method": order["payment_method"], "lines": lines,
        "order_updated_at_ms": int(order["updated_at_ms"]),
    }


def summarise(store_id: str, day: str, contributions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A store's day from its orders' contributions."""
    by_status: Counter[str] = Counter()
    hours = [{"hour": h, "sales_paise": 0, "orders": 0} for h in range(24)]
    products: dict[str, dict[str, Any]] = {}
    categories: dict[str, dict[str, Any]] = {}
    methods: Counter[str] = Counter()
    customers: Counter[str] = Counter()
    sales = sold = orders = 0
    for c in contributions:
        orders += 1
        by_status[c["status"]] += 1
        if not c["sold"]:
            continue
        sold += 1
        sales += int(c["total_paise"])
        hours[int(c["hour"])]["sales_paise"] += int(c["total_paise"])
        hours[int(c["hour"])]["orders"] += 1
        methods[c["payment_method"]] += 1
        customers[c["customer_id"]] += 1
        for line in c["lines"]:
            p = products.setdefault(line["sku"], {"sku": line["sku"], "name": line["name"], "qty": 0,
                                                  "sales_paise": 0})
            p["qty"] += line["qty"]
            p["sales_paise"] += line["line_total_paise"]
            k = categories.setdefault(line["category"], {"category": line["category"], "qty": 0, "sales_paise": 0})
            k["qty"] += line["qty"]
            k["sales_paise"] += line["line_total_paise"]
    return {
        "kind": "day", "store_id": store_id, "day": day, "orders": orders, "sold_orders": sold,
        "sales_paise": sales, "by_status": dict(by_status), "by_hour": hours,
        # Lists, not maps keyed by sku or category: keys must not carry dots, and nothing is queried inside.
        "products": sorted(products.values(), key=lambda p: p["sku"]),
        "categories": sorted(categories.values(), key=lambda k: k["category"]),
        "payment_methods": dict(methods),
        "customers": [{"customer_id": cid, "orders": n} for cid, n in sorted(customers.items())],
        "computed_at_ms": now_ms(),
    }


class Updater:
    """Brings orders into the read model: contributions first, then the days they touched."""

    def __init__(self, db: Database, tz: ZoneInfo, *, resum_every_ms: int = RESUM_EVERY_MS) -> None:
        self.db = db
        self.tz = tz
        self.resum_every_ms = resum_every_ms

    def update_orders(self, orders: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
        """Rewrite the orders' contributions; the (store, day) pairs that need summing again."""
        batch = list(orders)
        # From the orders' own lines (older orders: one read of their products for the whole batch).
        categories = catalog.line_categories(self.db, batch)
        touched: set[tuple[str, str]] = set()
        for order in batch:
            found = {line["sku"]: categories.get(stock.product_id(order["store_id"], line["sku"])) or "uncategorised"
                     for line in order.get("lines", [])}
            c = contribution(order, found, self.tz)
            self.db[STORE_ANALYTICS].update_one({"_id": f"order:{order['_id']}"}, {"$set": c}, upsert=True)
            touched.add((c["store_id"], c["day"]))
        return touched

    def resum(self, touched: Iterable[tuple[str, str]]) -> int:
        n = 0
        for store_id, day in sorted(set(touched)):
            found = self.db[STORE_ANALYTICS].find({"kind": "order", "store_id": store_id, "day": day})
            summary = summarise(store_id, day, found)
            self.db[STORE_ANALYTICS].update_one({"_id": f"day:{store_id}:{day}"}, {"$set": summary}, upsert=True)
            n += 1
        return n

    def scan(self, limit: int) -> Scanned:
        """One bounded batch of orders changed since the cursor, and the days that are due a sum.

        The cursor (updated_at_ms, order id) is stored after the batch's contributions are
        written, with the days they touched marked to be summed again; a day is summed when
        `resum_every_ms` has passed since its last sum. A run that dies resumes where the
        last finished batch ended, and its marks survive it in the cursor.
        """
        cursor = self.db[STORE_ANALYTICS].find_one({"_id": CURSOR_ID}) or {"at_ms": 0, "order_id": ""}
        at, last = int(cursor["at_ms"]), str(cursor["order_id"])
        until = now_ms() - SCAN_LAG_MS
        orders_ = self.db[collections.ORDERS]
        # Two queries rather than an $or: the rest of the cursor's millisecond, then what is newer.
        same = list(orders_.find({"updated_at_ms": at, "_id": {"$gt": last}}).sort("_id", 1).limit(limit))
        newer = list(orders_.find({"updated_at_ms": {"$gt": at, "$lt": until}})
                     .sort([("updated_at_ms", 1), ("_id", 1)]).limit(limit - len(same))) if len(same) < limit else []
        batch = same + newer
        days = {(d["store_id"], d["day"]): d for d in cursor.get("days", [])}
        for store_id, day in self.update_orders(batch):
            days.setdefault((store_id, day), {"store_id": store_id, "day": day, "summed_at_ms": 0})["dirty"] = True
        now = now_ms()
        due = [key for key, d in days.items() if d.get("dirty") and now - int(d["summed_at_ms"]) >= self.resum_every_ms]
        self.resum(due)
        for key in due:
            days[key].update(dirty=False, summed_at_ms=now)
        waiting = [self.resum_every_ms - (now - int(d["summed_at_ms"])) for d in days.values() if d.get("dirty")]
        if batch or due:
            tail = batch[-1] if batch else {"updated_at_ms": at, "_id": last}
            # Clean days summed over a day ago need no mark: their next change adds one again.
            kept = [d for d in days.values() if d.get("dirty") or now - int(d["summed_at_ms"]) < 86_400_000]
            self.db[STORE_ANALYTICS].update_one(
                {"_id": CURSOR_ID},
                {"$set": {"kind": "cursor", "at_ms": int(tail["updated_at_ms"]), "order_id": tail["_id"],
                          "days": kept, "updated_at_ms": now}}, upsert=True)
        return Scanned(len(batch), len(batch) == limit, max(0, min(waiting)) if waiting else None)


@dataclass(frozen=True)
class Scanned:
    orders: int
    more: bool  # the batch was full: more orders may be waiting now
    # When a day the batch touched is due its sum (ms from now); None: every day is summed.
    sum_due_in_ms: int | None


def report(db: Database, store_id: str, first_day: str, last_day: str, *, top: int = TOP) -> dict[str, Any]:
    """The store's analytics for days first_day..last_day (inclusive, local dates), merged from its days."""
    days = sorted(db[STORE_ANALYTICS].find({"kind": "day", "store_id": store_id,
                                            "day": {"$gte": first_day, "$lte": last_day}}),
                  key=lambda d: d["day"])
    by_status: Counter[str] = Counter()
    hours = [{"hour": h, "sales_paise": 0, "orders": 0} for h in range(24)]
    products: dict[str, dict[str, Any]] = {}
    categories: dict[str, dict[str, Any]] = defaultdict(lambda: {"qty": 0, "sales_paise": 0})
    methods: Counter[str] = Counter()
    customers: Counter[str] = Counter()
    for d in days:
        by_status.update(d["by_status"])
        for h in d["by_hour"]:
            hours[h["hour"]]["sales_paise"] += h["sales_paise"]
            hours[h["hour"]]["orders"] += h["orders"]
        for p in d["products"]:
            merged = products.setdefault(p["sku"], {"sku": p["sku"], "name": p["name"], "qty": 0, "sales_paise": 0})
            merged["qty"] += p["qty"]
            merged["sales_paise"] += p["sales_paise"]
        for k in d["categories"]:
            categories[k["category"]]["qty"] += k["qty"]
            categories[k["category"]]["sales_paise"] += k["sales_paise"]
        methods.update(d["payment_methods"])
        for c in d["customers"]:
            customers[c["customer_id"]] += c["orders"]
    sales = sum(d["sales_paise"] for d in days)
    sold = sum(d["sold_orders"] for d in days)
    buyers = len(customers)
    return {
        "store_id": store_id, "from": first_day, "to": last_day,
        "sales_paise": sales, "orders": sum(d["orders"] for d in days), "sold_orders": sold,
        "average_basket_paise": round(sales / sold) if sold else 0,
        "orders_by_status": dict(sorted(by_status.items())),
        "sales_by_day": [{"day": d["day"], "sales_paise": d["sales_paise"], "orders": d["orders"],
                          "sold_orders": d["sold_orders"]} for d in days],
        "sales_by_hour": hours,
        "top_products": sorted(products.values(), key=lambda p: (-p["sales_paise"], p["sku"]))[:top],
        "top_categories": sorted(({"category": k, **v} for k, v in categories.items()),
                                 key=lambda k: (-k["sales_paise"], k["category"]))[:top],
        # Of the customers who bought in the range, the share who bought more than once in it.
        "customers": buyers,
        "repeat_customer_rate": round(sum(1 for n in customers.values() if n > 1) / buyers, 4) if buyers else 0.0,
        "payment_methods": {m: {"orders": n, "share": round(n / sold, 4)} for m, n in sorted(methods.items())},
        "computed_at_ms": max((d["computed_at_ms"] for d in days), default=None),
    }
