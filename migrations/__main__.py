"""``python -m migrations indexes``: create every index kirana.db declares (idempotent)."""

from __future__ import annotations

import sys

from kirana import db


def main(argv: list[str]) -> int:
    if argv != ["indexes"]:
        print(__doc__, file=sys.stderr)
        return 2
    database = db.database()
    db.ensure_indexes(database)
    for collection, keys, options in db.INDEXES:
        unique = " unique" if options.get("unique") else ""
        print(f"{collection}: {', '.join(k for k, _ in keys)}{unique}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
