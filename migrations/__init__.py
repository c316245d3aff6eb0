"""Database changes.

Today this holds one step: the indexes the code relies on, declared in
kirana.db.INDEXES and applied (idempotently) by ``python -m migrations indexes``,
which `make run` and the test fixtures also do. The versioned runner with
history, lock, backup-first and rollback is not built yet (issue 9).
"""
