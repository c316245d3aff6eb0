"""Loyalty rules, periods and the leaderboard score encoding, without servers."""

from __future__ import annotations

import datetime as dt

from kirana.loyalty import achievements, boards
from kirana.loyalty.rules import Rules

RULES = Rules(paise_per_point=1000, bonus_categories=frozenset({"Dairy"}), first_order_bonus=50,
              point_value_paise=25)


def _order(*lines: tuple[str, int], discount: int = 0) -> dict:
    subtotal = sum(total for _, total in lines)
    return {"lines": [{"sku": sku, "line_total_paise": total} for sku, total in lines],
            "subtotal_paise": subtotal, "total_paise": subtotal - discount}


def test_one_point_per_ten_rupees_paid_and_a_bonus_category_earns_twice() -> None:
    earned = RULES.earned(_order(("MILK", 25_999), ("ATTA", 31_000)), {"MILK": "Dairy", "ATTA": "Atta"}, first=False)
    assert earned == {"base": 56, "bonus_category": 25}


def test_the_first_order_bonus_and_rules_that_earn_nothing_are_left_out() -> None:
    assert RULES.earned(_order(("ATTA", 999)), {"ATTA": "Atta"}, first=True) == {"first_order": 50}


def test_points_are_earned_on_what_was_paid_after_a_points_discount() -> None:
    earned = RULES.earned(_order(("MILK", 40_000), discount=20_000), {"MILK": "Dairy"}, first=False)
    assert earned == {"base": 20, "bonus_category": 20}
    assert RULES.discount_paise(40) == 1000


def test_periods_are_indian_days_weeks_and_months() -> None:
    # 2026-11-29 00:10 IST is still the 28th in UTC.
    at = int(dt.datetime(2026, 11, 28, 18, 40, tzinfo=dt.UTC).timestamp() * 1000)
    assert [boards.bucket(p, at) for p in boards.PERIODS] == ["2026-11-29", "2026-W48", "2026-11", "all"]
    start, end = boards.bucket_range_ms("day", "2026-11-29")
    assert start <= at < end and end - start == 86_400_000
    start, end = boards.bucket_range_ms("month", "2026-12")
    assert end - start == 31 * 86_400_000
    assert boards.expire_at("all", "all") == 0
    assert boards.expire_at("week", "2026-W48") == (boards.bucket_range_ms("week", "2026-W48")[1] // 1000) + 7 * 86_400


def test_more_points_rank_first_and_equal_points_rank_the_earlier_first() -> None:
    t = 1_780_000_000_000
    assert boards.encode(11, t + 10**9) > boards.encode(10, t)
    assert boards.encode(10, t) > boards.encode(10, t + 1000)
    assert boards.decode(boards.encode(10, t)) == 10
    assert boards.decode(boards.encode(0, t)) == 0
    assert boards.decode(boards.encode(-3, t)) == -3
    big = 2**22 - 1  # the largest exact in a double
    assert float(boards.encode(big, t)) == boards.encode(big, t)


def test_a_streak_is_consecutive_indian_days() -> None:
    day = 86_400_000
    base = int(dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
    done = [achievements.Done(f"o{i}", base + i * day, 100, frozenset()) for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)]
    assert achievements.longest_streak(done) == 7
    assert not achievements.BY_ID["week_streak"].reached(done[:6])
    assert achievements.BY_ID["week_streak"].reached(done)
