"""`python -m kirana.search reindex|status|lag`: rebuild the product index with a progress bar, or look at it.

The rebuild runs in this process against the configured MongoDB and Redis,
into a new keyspace flipped in atomically (searches meanwhile use the old one).
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from kirana import db, search


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kirana.search", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reindex = commands.add_parser("reindex", help="rebuild the whole index (atomic switch-over)")
    reindex.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("status", help="index version, size and lag as JSON")
    args = parser.parse_args(argv)
    database = db.database()
    if args.command == "status":
        print(json.dumps(search.stats(database), indent=2))
        return 0
    bar = tqdm(total=database[db.PRODUCTS].estimated_document_count(), unit="product", disable=args.quiet,
               file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = max(total, done)
        bar.update(done - bar.n)

    try:
        built = search.rebuild(database, progress=progress)
    finally:
        bar.close()
    print(f"index v{built['version']}: {built['docs']} products in {built['duration_ms']} ms"
          + (f" (replaced v{built['replaced']})" if built["replaced"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
