"""Dead letters from a shell: ``python -m tasks.dead_letters list|show|replay|discard``.

    python -m tasks.dead_letters list [--task T] [--status open] [--limit 50]
    python -m tasks.dead_letters show ID
    python -m tasks.dead_letters replay ID      re-enqueue under a new task id (audited)
    python -m tasks.dead_letters discard ID     keep it, marked discarded (audited)
    python -m tasks.dead_letters bulk replay|discard [--task T] [--exc-type E] [--queue Q]
        [--failed-from-ms MS] [--failed-until-ms MS] [--dry-run] [--per-second N]
                                                every open letter matching them; a replay is paced
                                                here, in this process (audited once)
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from kirana import audit, db, dead_letters
from kirana.clock import now_ms
from kirana.config import settings
from tasks import audit as audit_task
from tasks.reliability import replay, replay_selection


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.dead_letters", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--task")
    listing.add_argument("--status", choices=[dead_letters.OPEN, dead_letters.REPLAYED, dead_letters.DISCARDED])
    listing.add_argument("--order-id")
    listing.add_argument("--limit", type=int, default=50)
    for verb in ("show", "replay", "discard"):
        sub.add_parser(verb).add_argument("id")
    bulk = sub.add_parser("bulk")
    bulk.add_argument("action", choices=["replay", "discard"])
    for name in ("--task", "--exc-type", "--queue"):
        bulk.add_argument(name)
    bulk.add_argument("--failed-from-ms", type=int)
    bulk.add_argument("--failed-until-ms", type=int)
    bulk.add_argument("--dry-run", action="store_true")
    bulk.add_argument("--per-second", type=float, default=settings().dead_letter_replay_per_s)
    args = parser.parse_args(argv)
    database = db.database()
    try:
        if args.command == "bulk":
            return _bulk(args)
        if args.command == "list":
            items, total = dead_letters.query(database, task=args.task, status=args.status,
                                              order_id=args.order_id, limit=args.limit)
            print(f"{total} dead letter(s)")
            for letter in items:
                print(f"{letter['id']}  {letter['status']:<9} {letter['task']:<24} {letter['exc_type']}: "
                      f"{letter['message'][:60]}")
        elif args.command == "show":
            print(json.dumps(dead_letters.view(dead_letters.get(database, args.id), full=True), indent=2,
                             default=str))
        elif args.command == "replay":
            done = replay(args.id, by=_actor())
            audit_task.send(audit.new_event("dead_letter.replayed", actor=None, target=args.id,
                                            detail={"by": _actor(), "task_id": done["replayed_as"]}))
            print(f"replayed {args.id} as task {done['replayed_as']}")
        else:
            dead_letters.discard(database, args.id, by=_actor())
            audit_task.send(audit.new_event("dead_letter.discarded", actor=None, target=args.id,
                                            detail={"by": _actor()}))
            print(f"discarded {args.id}")
    except dead_letters.NotFound:
        print(f"no dead letter {args.id}", file=sys.stderr)
        return 1
    except dead_letters.AlreadyClosed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def _bulk(args: argparse.Namespace) -> int:
    database = db.database()
    selection = dead_letters.Selection(args.task, args.exc_type, args.queue, args.failed_from_ms,
                                       args.failed_until_ms).as_of(now_ms())
    count, sample = dead_letters.preview(database, selection)
    print(f"{count} open dead letter(s) match {selection.describe()}")
    for letter in sample:
        print(f"  {letter['id']}  {letter['task']:<24} {letter['exc_type']}: {letter['message'][:60]}")
    if args.dry_run:
        return 0
    if args.action == "discard":
        done = dead_letters.discard_selected(database, selection, by=_actor())
        action = dead_letters.BULK_DISCARDED
    else:
        print(f"replaying at most {args.per_second:g} a second")
        done = replay_selection(selection, by=_actor(), per_second=args.per_second)
        action = dead_letters.BULK_REPLAYED
    audit_task.send(audit.new_event(action, actor=None, target="dead_letters",
                                    detail={"by": _actor(), "selection": selection.describe(), "count": done}))
    print(f"{args.action}: {done}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
