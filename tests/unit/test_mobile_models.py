"""Pure parts of the mobile backend: the sync order key and the analytics sums."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from kirana import analytics, sync

IST = ZoneInfo("Asia/Kolkata")


def _op(seq: int, client_at: int, arrival: int, index: int) -> dict[str, int]:
    return {"seq": seq, "client_at_ms": client_at, "arrival_ms": arrival, "arrival_index": index}


def test_the_client_sequence_orders_first_then_the_device_clock_then_arrival() -> None:
    later_seq_earlier_clock = _op(2, 100, 1, 0)
    first = _op(1, 900, 9, 5)
    same_key_arrived_first, same_key_arrived_second = _op(3, 50, 4, 1), _op(3, 50, 4, 2)

    ordered = sorted([same_key_arrived_second, later_seq_earlier_clock, same_key_arrived_first, first],
                     key=sync.order_key)

    assert ordered == [first, later_seq_earlier_clock, same_key_arrived_first, same_key_arrived_second]


def _order(oid: str, status: str, total: int, customer: str, at_ms: int, *, method: str = "cod") -> dict:
    return {"_id": oid, "store_id": "s", "status": status, "total_paise": total, "customer_id": customer,
            "payment_method": method, "created_at_ms": at_ms, "updated_at_ms": at_ms,
            "lines": [{"sku": "ATTA", "name": "Atta", "qty": 2, "line_total_paise": total}]}


def test_a_day_sums_only_sold_orders_into_sales_and_counts_every_status() -> None:
    # 2026-11-27 23:45 IST is 18:15 UTC: the order belongs to the 27th, hour 23, in the store's time.
    late = 1_795_803_300_000
    orders = [_order("o1", "confirmed", 500, "c1", late), _order("o2", "delivered", 300, "c1", late, method="upi"),
              _order("o3", "cancelled", 999, "c2", late), _order("o4", "awaiting_payment", 700, "c3", late)]
    parts = [analytics.contribution(o, {"ATTA": "staples"}, IST) for o in orders]

    day = analytics.summarise("s", parts[0]["day"], parts)

    assert (parts[0]["day"], parts[0]["hour"]) == ("2026-11-27", 23)
    assert (day["orders"], day["sold_orders"], day["sales_paise"]) == (4, 2, 800)
    assert day["by_status"] == {"confirmed": 1, "delivered": 1, "cancelled": 1, "awaiting_payment": 1}
    assert day["by_hour"][23] == {"hour": 23, "sales_paise": 800, "orders": 2}
    assert day["categories"] == [{"category": "staples", "qty": 4, "sales_paise": 800}]
    assert day["payment_methods"] == {"cod": 1, "upi": 1}
    assert day["customers"] == [{"customer_id": "c1", "orders": 2}]
