"""``python -m migrations status|plan|up|down|validate|indexes``: versioned changes to MONGO_DB.

    status                       every version: applied or pending, when, by whom; changed checksums
    plan [--to N] [--down]       what `up` (or `down --to N`) would run, without running it
    up [--to N]                  apply pending versions up to N (default: the last)
    down --to N                  roll back to N; refuses an irreversible step
    validate                     live collections and indexes against the applied versions; exit 1 on drift
    indexes                      create kirana.db.INDEXES as they stand (idempotent; what tests and
                                 `make run` use; no history, no backup)

up and down take a backup first (kirana.backups) unless --no-backup; without
a backup, down refuses to drop a collection that holds documents. A second
runner waits --wait seconds for the lock (default 0: refuse at once).
Exit status: 0 done, 1 refused, failed or drift, 2 usage, 3 lock held.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import socket
import sys

from pymongo.database import Database

from kirana import db
from migrations import lock, runner
from migrations.versions import HEAD, STEPS


def _by() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _backup(database: Database) -> str:
    from kirana.backups import jobs

    if not database.list_collection_names():
        return "(none: the database is empty)"
    return str(jobs.run(database, by=_by(), reason="before migrations")["backup_id"])


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _status(database: Database) -> int:
    states = runner.status(database)
    print(f"database {database.name}: at v{runner.current(database)} of v{HEAD}")
    for state in states:
        record = state.record
        if state.applied and record is not None:
            mark = "applied"
            detail = f"{_when(record['applied_at_ms'])} by {record['by']} in {record['duration_ms']} ms"
        else:
            mark = "pending"
            detail = f"rolled back {_when(record['applied_at_ms'])}" if record else ""
        changed = "  CHECKSUM CHANGED since applied" if state.checksum_changed else ""
        print(f"  v{state.step.version:<3} {mark:<8} {state.step.name}  {detail}{changed}")
    return 0


def _plan(database: Database, to: int | None, down: bool) -> int:
    steps = runner.plan_down(database, to or 0) if down else runner.plan_up(database, to)
    if not steps:
        print("nothing to do")
    for step in steps:
        blocked = "  (irreversible: down refuses)" if down and step.irreversible else ""
        print(f"{'down' if down else 'up'} v{step.version}: {step.name}{blocked}")
        if not down:
            for name in step.collections:
                print(f"    create collection {name}")
            if step.data_up is not None:
                print(f"    data: {step.data_up.__name__.strip('_').replace('_', ' ')}")
        for collection, keys, unique in step.indexes:
            verb = "drop" if down else "create"
            print(f"    {verb} index {collection} ({', '.join(k for k, _ in keys)}){' unique' if unique else ''}")
        if down:
            for name in step.collections:
                print(f"    drop collection {name} ({database[name].estimated_document_count()} documents)")
    return 0


def _validate(database: Database) -> int:
    problems = runner.validate(database)
    at = runner.current(database)
    if not problems:
        print(f"database {database.name} matches v{at}")
        return 0
    print(f"database {database.name} drifted from v{at}:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def _indexes(database: Database) -> int:
    db.ensure_indexes(database)
    for collection, keys, options in db.INDEXES:
        unique = " unique" if options.get("unique") else ""
        print(f"{collection}: {', '.join(k for k, _ in keys)}{unique}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status")
    planning = sub.add_parser("plan")
    planning.add_argument("--to", type=int)
    planning.add_argument("--down", action="store_true", help="plan `down --to N` instead of `up`")
    for verb in ("up", "down"):
        moving = sub.add_parser(verb)
        moving.add_argument("--to", type=int, required=verb == "down")
        moving.add_argument("--no-backup", action="store_true", help="skip the backup taken first")
        moving.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another runner (0)")
        moving.add_argument("--batch", type=int, default=500, help="documents per batch of a data change (500)")
    sub.add_parser("validate")
    sub.add_parser("indexes")
    args = parser.parse_args(argv)
    if getattr(args, "to", None) is not None and not 0 <= args.to <= HEAD:
        parser.error(f"--to must be between 0 and {HEAD}")
    database = db.database()
    if args.command == "status":
        return _status(database)
    if args.command == "plan":
        return _plan(database, args.to, args.down)
    if args.command == "validate":
        return _validate(database)
    if args.command == "indexes":
        return _indexes(database)
    from migrations.backfill import Context

    run = runner.Runner(database, by=_by(), backup=None if args.no_backup else _backup, wait_s=args.wait,
                        ctx=Context(batch=args.batch), steps=tuple(STEPS))
    try:
        done = run.up(args.to) if args.command == "up" else run.down(args.to)
    except lock.LockHeld as exc:
        print(str(exc), file=sys.stderr)
        return 3
    except runner.MigrationError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.command}: {len(done)} version(s); now at v{runner.current(database)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
