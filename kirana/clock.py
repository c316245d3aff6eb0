"""Time as the store records it: integer epoch milliseconds in updates."""

from __future__ import annotations

import datetime as dt
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utcnow() -> dt.datetime:
    # Only written on insert: the embedded server and MongoDB agree on
    # datetimes there, and updates carry integer milliseconds instead.
    return dt.datetime.now(dt.UTC)
