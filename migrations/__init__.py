"""Versioned MongoDB migrations: history, a lock, a backup first, rollback, validation.

`versions.STEPS` is the ordered list of versions; `runner` applies and rolls
them back under the lock in `lock` and records each in the insert-only
`migrations` history; `backfill` runs data changes in batches that resume
from a cursor. ``python -m migrations --help`` for the commands;
``python -m migrations indexes`` still creates kirana.db.INDEXES directly
(what `make run` and the test fixtures do).
"""
