"""Apply and roll back versions, with history, the lock, a backup first, and validation.

History (`migrations`) is insert-only: every apply and every rollback adds
a record (version, name, direction, checksum, applied_at, duration_ms, by);
a version is applied when its latest record is an "up".
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from kirana.clock import now_ms, utcnow
from migrations import lock
from migrations.backfill import PROGRESS, Context
from migrations.steps import Index, Step
from migrations.versions import STEPS

HISTORY = "migrations"
# The runner's own collections: never declared by a step, never drift.
INTERNAL = frozenset({HISTORY, lock.LOCK, PROGRESS})

Backup = Callable[[Database], str]


class MigrationError(Exception):
    pass


class Irreversible(MigrationError):
    pass


class WouldLoseData(MigrationError):
    pass


@dataclass(frozen=True)
class StepStatus:
    step: Step
    record: dict[str, Any] | None  # the latest history record, if any

    @property
    def applied(self) -> bool:
        return self.record is not None and self.record["direction"] == "up"

    @property
    def checksum_changed(self) -> bool:
        return self.applied and self.record is not None and self.record["checksum"] != self.step.checksum()


def history(db: Database) -> list[dict[str, Any]]:
    return list(db[HISTORY].find({}).sort([("applied_at_ms", 1), ("_id", 1)]))


def status(db: Database, steps: Sequence[Step] = STEPS) -> list[StepStatus]:
    latest: dict[int, dict[str, Any]] = {}
    for record in history(db):
        latest[int(record["version"])] = record
    return [StepStatus(step, latest.get(step.version)) for step in steps]


def current(db: Database, steps: Sequence[Step] = STEPS) -> int:
    """The highest version applied with every version before it."""
    version = 0
    for state in status(db, steps):
        if not state.applied:
            break
        version = state.step.version
    return version


def plan_up(db: Database, to: int | None = None, steps: Sequence[Step] = STEPS) -> list[Step]:
    target = steps[-1].version if to is None else to
    return [s.step for s in status(db, steps) if not s.applied and s.step.version <= target]


def plan_down(db: Database, to: int, steps: Sequence[Step] = STEPS) -> list[Step]:
    return [s.step for s in reversed(status(db, steps)) if s.applied and s.step.version > to]


def _record(db: Database, step: Step, direction: str, started: float, by: str) -> None:
    at = now_ms()
    db[HISTORY].insert_one({
        "_id": f"{step.version:04d}.{direction}.{at}.{secrets.token_hex(3)}",
        "version": step.version, "name": step.name, "direction": direction, "checksum": step.checksum(),
        "applied_at": utcnow(), "applied_at_ms": at, "duration_ms": int((time.monotonic() - started) * 1000),
        "by": by,
    })


def _index_names(db: Database, collection: str) -> dict[tuple[tuple[str, int], ...], str]:
    return {tuple((f, int(d)) for f, d in spec["key"]): name
            for name, spec in db[collection].index_information().items()}


def apply_up(db: Database, step: Step, ctx: Context) -> None:
    existing = set(db.list_collection_names())
    for name in step.collections:
        if name not in existing:
            db.create_collection(name)
    if step.data_up is not None:
        step.data_up(db, ctx)
    for collection, keys, unique in step.indexes:
        db[collection].create_index(list(keys), unique=unique)


def apply_down(db: Database, step: Step, ctx: Context) -> None:
    if step.irreversible:
        raise Irreversible(f"v{step.version} ({step.name}) is irreversible: {step.irreversible}")
    if step.data_down is not None:
        step.data_down(db, ctx)
    existing = set(db.list_collection_names())
    for collection, keys, _unique in step.indexes:
        if collection in existing:
            name = _index_names(db, collection).get(keys)
            if name is not None:
                db[collection].drop_index(name)
    for name in step.collections:
        db.drop_collection(name)


@dataclass
class Runner:
    db: Database
    by: str
    backup: Backup | None = None
    wait_s: float = 0.0
    lease_ms: int = lock.LEASE_MS
    ctx: Context | None = None
    steps: Sequence[Step] = tuple(STEPS)
    log: Callable[[str], None] = print

    def _run(self, plan: Callable[[], list[Step]], direction: str,
             check: Callable[[list[Step]], None]) -> list[int]:
        owner = lock.new_owner()
        lock.wait_for(self.db, owner, self.wait_s, self.lease_ms)
        try:
            # Planned under the lock: a runner that waited sees what the other one did.
            todo = plan()
            if not todo:
                self.log(f"nothing to do: at v{current(self.db, self.steps)}")
                return []
            check(todo)
            if self.backup is not None:
                self.log(f"backup {self.backup(self.db)} taken before migrating {direction}")
            ctx = self.ctx or Context()
            user_hook = ctx.after_batch

            def after_batch() -> None:
                lock.renew(self.db, owner, self.lease_ms)
                user_hook()

            run_ctx = Context(batch=ctx.batch, after_batch=after_batch, show_progress=ctx.show_progress, log=ctx.log)
            done: list[int] = []
            for step in todo:
                started = time.monotonic()
                (apply_up if direction == "up" else apply_down)(self.db, step, run_ctx)
                _record(self.db, step, direction, started, self.by)
                lock.renew(self.db, owner, self.lease_ms)
                self.log(f"v{step.version} {direction}: {step.name} ({int((time.monotonic() - started) * 1000)} ms)")
                done.append(step.version)
            return done
        finally:
            lock.release(self.db, owner)

    def up(self, to: int | None = None) -> list[int]:
        return self._run(lambda: plan_up(self.db, to, self.steps), "up", lambda todo: None)

    def down(self, to: int) -> list[int]:
        def check(todo: list[Step]) -> None:
            blocked = [s for s in todo if s.irreversible]
            if blocked:
                s = blocked[0]
                raise Irreversible(f"v{s.version} ({s.name}) is irreversible: {s.irreversible}")
            if self.backup is None:
                holding = [f"{c} ({n} documents)" for s in todo for c in s.collections
                           if (n := self.db[c].estimated_document_count()) > 0]
                if holding:
                    raise WouldLoseData("rolling back would drop collections that hold documents, and no backup "
                                        f"was asked for: {', '.join(holding)}")

        return self._run(lambda: plan_down(self.db, to, self.steps), "down", check)


def declared(steps: Sequence[Step]) -> tuple[set[str], set[Index]]:
    collections: set[str] = set()
    indexes: set[Index] = set()
    for step in steps:
        collections.update(step.collections)
        indexes.update(step.indexes)
    return collections, indexes


def validate(db: Database, steps: Sequence[Step] = STEPS) -> list[str]:
    """Drift between the live database and the versions applied to it; empty when they match."""
    states = status(db, steps)
    problems = [f"v{s.step.version} ({s.step.name}) changed after it was applied: checksum "
                f"{s.record['checksum'][:12]} then, {s.step.checksum()[:12]} now"
                for s in states if s.checksum_changed and s.record is not None]
    applied = [s.step for s in states if s.applied]
    pending = {c: s.step.version for s in states if not s.applied for c in s.step.collections}
    want_collections, want_indexes = declared(applied)
    live = {n for n in db.list_collection_names() if n not in INTERNAL and not n.startswith("system.")}
    for name in sorted(want_collections - live):
        problems.append(f"collection {name}: missing")
    for name in sorted(live - want_collections):
        hint = f" (declared by v{pending[name]}, not applied)" if name in pending else ""
        problems.append(f"collection {name}: not declared by any applied version{hint}")
    for name in sorted(live):
        have = {keys: unique for keys, unique in _live_indexes(db, name).items() if keys != (("_id", 1),)}
        want = {keys: unique for c, keys, unique in want_indexes if c == name}
        for keys in sorted(set(want) - set(have)):
            problems.append(f"index {name} {_fmt(keys)}: missing")
        for keys in sorted(set(have) - set(want)):
            problems.append(f"index {name} {_fmt(keys)}: not declared by any applied version")
        for keys in sorted(set(want) & set(have)):
            if want[keys] != have[keys]:
                problems.append(f"index {name} {_fmt(keys)}: unique is {have[keys]}, declared {want[keys]}")
    return problems


def _live_indexes(db: Database, collection: str) -> dict[tuple[tuple[str, int], ...], bool]:
    return {tuple((f, int(d)) for f, d in spec["key"]): bool(spec.get("unique", False))
            for spec in db[collection].index_information().values()}


def _fmt(keys: tuple[tuple[str, int], ...]) -> str:
    return "(" + ", ".join(k for k, _ in keys) + ")"
