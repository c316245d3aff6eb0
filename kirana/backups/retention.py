"""Which backups to keep: the newest of each of the last N days and of each of the last M weeks.

Counted as restic's ``--keep-daily`` / ``--keep-weekly`` do: days and weeks
(ISO weeks, UTC) that have at least one backup, newest first; a backup kept
for its day may also be the one kept for its week. The newest backup is
always kept, whatever the counts.

>>> from datetime import datetime, UTC
>>> at = lambda d: int(datetime(2026, 11, d, 3, tzinfo=UTC).timestamp() * 1000)
>>> sorted(keep([("a", at(1)), ("b", at(2)), ("c", at(3))], daily=2, weekly=0))
['b', 'c']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def _day(at_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).date()


def keep(backups: Iterable[tuple[str, int]], *, daily: int, weekly: int) -> set[str]:
    """The ids to keep of `backups` given as (id, started_at_ms)."""
    newest_first = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    kept: set[str] = set()
    if not newest_first:
        return kept
    kept.add(newest_first[0][0])
    days: set[dt.date] = set()
    weeks: set[tuple[int, int]] = set()
    for backup_id, at_ms in newest_first:
        day = _day(at_ms)
        if day not in days and len(days) < daily:
            days.add(day)
            kept.add(backup_id)
        iso = day.isocalendar()
        week = (iso.year, iso.week)
        if week not in weeks and len(weeks) < weekly:
            weeks.add(week)
            kept.add(backup_id)
    return kept
