"""`python -m kirana.loyalty refresh`: rebuild every current leaderboard from the ledger now."""

from __future__ import annotations

import argparse
import sys

from kirana import db, redis_conn
from kirana.clock import now_ms
from kirana.config import settings
from kirana.loyalty import boards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kirana.loyalty")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("refresh", help="rebuild the store and city boards (day, week, month, all time) from the ledger")
    parser.parse_args(argv)
    done = boards.refresh(db.database(), boards.Boards(redis_conn.client()), now_ms=now_ms(),
                          margin_ms=settings().leaderboard_refresh_margin_s * 1000)
    print(f"refreshed {done.boards} boards from {done.entries} ledger entries ({done.members} members) "
          f"in {done.seconds:.2f}s, {done.rows_per_s:,.0f} entries/s", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
