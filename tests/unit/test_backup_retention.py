"""Retention keeps the newest backup of each of the last N days and M weeks, and nothing else."""

from __future__ import annotations

import datetime as dt

from kirana.backups.retention import keep


def _at(day: int, hour: int = 3) -> int:
    return int(dt.datetime(2026, 11, day, hour, tzinfo=dt.UTC).timestamp() * 1000)


def test_daily_keeps_the_newest_of_each_of_the_last_n_days() -> None:
    backups = [(f"d{day}h{hour}", _at(day, hour)) for day in range(1, 11) for hour in (1, 5)]

    kept = keep(backups, daily=3, weekly=0)

    assert kept == {"d10h5", "d9h5", "d8h5"}


def test_weekly_keeps_the_newest_of_each_iso_week_beyond_the_daily_ones() -> None:
    # November 2026: the 2nd is a Monday, so weeks start on the 2nd, 9th, 16th, 23rd, 30th.
    backups = [(f"d{day}", _at(day)) for day in range(1, 29)]

    kept = keep(backups, daily=2, weekly=3)

    # daily: the 28th and 27th; weekly: the newest of the weeks of the 23rd, 16th and 9th.
    assert kept == {"d28", "d27", "d22", "d15"}


def test_days_without_a_backup_do_not_count() -> None:
    backups = [("a", _at(1)), ("b", _at(5)), ("c", _at(20))]

    assert keep(backups, daily=2, weekly=0) == {"c", "b"}


def test_the_newest_is_kept_even_with_nothing_to_keep() -> None:
    assert keep([("old", _at(1)), ("new", _at(2))], daily=0, weekly=0) == {"new"}
    assert keep([], daily=7, weekly=4) == set()
