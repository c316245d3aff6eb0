"""`python -m bench [--only orders|webhooks|sockets|search|backups|loyalty|all] [--orders N] [--webhooks N]
[--sockets N] [--backup-docs N] [--disk-mb M] [--awards N] [--ledger N] [--ledger-customers N]
[--concurrency C] [--rate R] [--rates R1,R2,.. [--rate-seconds S]] [--warmup W]`.

What `make bench` runs (BENCH_ARGS="--only webhooks" passes flags).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from stack import servers


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Accepted orders/s and accept latency of POST /api/v1/orders beside a bare enqueue route, "
        "and submit->confirmed latency; then accepted events/s and latency of POST /webhooks/razorpay; "
        "on private servers started for the run.",
    )
    parser.add_argument("--only", choices=("orders", "webhooks", "sockets", "search", "backups", "loyalty", "prune",
                                           "all"),
                        default="all",
                        help="which phases: orders (and the bare route), webhooks, sockets (live order updates "
                        "over WebSockets), search (search/suggest latency, rebuild times, index lag), backups "
                        "(backup and restore throughput beside the disk's write speed), loyalty (ledger entries/s "
                        "through the leaderboards queue and a full leaderboard refresh, on servers of its own), prune "
                        "(the bounded-storage prune of --prune-rows old rows, and the orders' rate before and "
                        "during it), or all (default)")
    parser.add_argument("--backup-docs", type=_positive, default=1_000_000,
                        help="documents in the collection the backups phase dumps and restores (1000000)")
    parser.add_argument("--disk-mb", type=_positive, default=1024,
                        help="MB the backups phase writes (and fsyncs) to measure the disk (1024)")
    parser.add_argument("--awards", type=_positive, default=2000,
                        help="confirmed orders synced through the leaderboards queue in the loyalty phase (2000)")
    parser.add_argument("--ledger", type=_positive, default=1_000_000,
                        help="generated ledger entries for the loyalty phase's full refresh (1,000,000)")
    parser.add_argument("--ledger-customers", type=_positive, default=100_000,
                        help="customers those entries are spread over (100,000)")
    parser.add_argument("--orders", type=_positive, default=2000, help="measured requests per phase (2000)")
    parser.add_argument("--webhooks", type=_positive, default=10000,
                        help="webhook events measured with ingest alone (10000)")
    parser.add_argument("--webhooks-shared", type=_non_negative, default=3000,
                        help="webhook events measured while the webhooks worker handles on the same cores (3000; 0: "
                        "skip)")
    parser.add_argument("--sockets", type=_positive, default=1000,
                        help="WebSockets held open on the one gevent ws process in the sockets phase (1000)")
    parser.add_argument("--no-webhooks-worker", dest="webhooks_worker", action="store_false",
                        help="start no webhooks worker: leave the events' queue unconsumed and purge it after")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip timing the webhook ingest's parts on their own after the webhooks phase")
    parser.add_argument("--searches", type=_positive, default=2000,
                        help="measured searches, and as many suggests, in the search phase (2000)")
    parser.add_argument("--search-catalog", type=_non_negative, default=50_000,
                        help="products of the generated catalog whose full rebuild is timed; 0 skips it (50000)")
    parser.add_argument("--update-rate", type=_positive, default=100,
                        help="price changes per second while the index lag is sampled (100)")
    parser.add_argument("--update-seconds", type=_positive, default=10, help="how long they stream (10)")
    parser.add_argument("--concurrency", type=_positive, default=16, help="client threads (16)")
    parser.add_argument("--rate", type=float, default=None,
                        help="offer the orders and the bare route at this many requests/s (an open loop: "
                        "--orders 6000 --rate 100 is 60 s at 100/s) instead of as fast as they are answered")
    parser.add_argument("--rates", type=lambda raw: tuple(float(r) for r in raw.split(",")), default=(),
                        help="with --only orders: instead of the orders and bare phases, offer cash orders at each "
                        "of these rates in turn (e.g. 10,20,30,40) for --rate-seconds each, and print "
                        "submit->confirmed p50/p99 per rate and the highest rate whose p99 stays <= 250 ms")
    parser.add_argument("--rate-seconds", type=float, default=60.0, help="seconds per rate of --rates (60)")
    parser.add_argument("--prune-rows", type=int, default=1_000_000,
                        help="with --only prune: old rows the prune phase deletes (default 1,000,000)")
    parser.add_argument("--client", choices=("requests", "http", "raw"), default=None,
                        help="the load generator's keep-alive connections in every phase: requests.Session or bare "
                        "http.client per thread, or raw asyncio connections on one thread (per request ~2, ~0.2 and "
                        "less again ms of CPU, taken from the servers on 2 cores); by default requests for orders and "
                        "the bare route (as before), raw for webhooks")
    parser.add_argument("--warmup", type=_non_negative, default=100, help="uncounted requests first (100)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generated orders (1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and its logs")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kirana-bench-"))
    redis_port, mongo_port = servers.free_port(), servers.free_port()
    # Before anything imports kirana.config: settings() reads the environment once,
    # and every child process inherits it.
    os.environ.update({
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MONGO_URL": f"mongodb://127.0.0.1:{mongo_port}",
        "MONGO_DB": "kirana_bench",
        "KIRANA_DATA_DIR": str(tmp),
        # The run's own Razorpay sandbox (the orders phase's round-trip count pays a UPI order in it).
        "RAZORPAY_BASE_URL": f"http://127.0.0.1:{servers.free_port()}",
        # workers.pools.worker_command reads this from *this* process to build the
        # worker's `-l`; per-task INFO lines would cost the measured worker CPU.
        "KIRANA_WORKER_LOGLEVEL": "WARNING",
    })
    signal.signal(signal.SIGTERM, _terminate)
    stop = threading.Event()
    try:
        from bench.backups import run_phase as run_backups
        from bench.procstat import reference_ms, speed_line
        from bench.run import Options, run

        print(speed_line(reference_ms()), flush=True)

        if args.only == "backups":
            return run_backups(tmp, args.backup_docs, args.disk_mb, args.seed)
        failed = 0
        if args.only != "loyalty":
            opts = Options(orders=args.orders, concurrency=args.concurrency, warmup=args.warmup, seed=args.seed,
                           only=args.only, webhooks=args.webhooks, webhooks_shared=args.webhooks_shared,
                           webhooks_worker=args.webhooks_worker,
                           breakdown=args.breakdown, client=args.client, sockets=args.sockets,
                           searches=args.searches, search_catalog=args.search_catalog, update_rate=args.update_rate,
                           update_seconds=args.update_seconds, rate=args.rate,
                           rates=args.rates, rate_seconds=args.rate_seconds, prune_rows=args.prune_rows)
            failed = run(opts, tmp, redis_port, mongo_port, stop)
        if args.only == "all":
            print(flush=True)
            failed |= run_backups(tmp, args.backup_docs, args.disk_mb, args.seed)
        if args.only in ("loyalty", "all"):
            from bench import loyalty

            # Fresh servers on the same ports (the other phases stopped theirs): no other phase's orders count.
            here = tmp / "loyalty"
            here.mkdir()
            lopts = loyalty.LoyaltyOptions(awards=args.awards, ledger=args.ledger, customers=args.ledger_customers,
                                           seed=args.seed)
            failed |= loyalty.run(lopts, here, redis_port, mongo_port, phases=("incremental", "refresh"))
        return failed
    except KeyboardInterrupt:
        print("\n[bench] interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"[bench] logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
