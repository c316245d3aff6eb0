"""`make soak`: `make run`'s whole stack fed cash orders at a fixed rate, watched as ops would watch it.

    python -m bench.soak [--rate 30] [--minutes 10] [--sample-s 30] [--customers 8] [--keep]

The stack is `python -m stack run` itself (every pool at its configured concurrency, beat, the
outbox relay, the sandboxes, Flower, the exporter), on free ports and a temporary data dir,
with MONGO_COMMAND_COUNTS=1 so each of its processes counts its MongoDB commands
(kirana/command_counts.py). Orders are offered in an open loop (bench/load.py): order i is
due at start + i/rate whatever the answers, so a stack that falls behind shows it.

Every --sample-s it prints each queue's length (and the unacked messages), the orders
final so far, MongoDB commands/s by collection, and the CPU the stack's processes used.
At the end: accepted, errors, how many orders were final with every follow-up done (every
queue and the unacked hashes empty, no intent left unsent) within --drain-s of the last
submit, submit->confirmed p50/p99, MongoDB commands per order with the follow-ups, and the
RSS growth of each kind of process. Each figure is printed beside the goal of issue 19.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from pymongo.database import Database

from bench.load import Phase
from stack import servers
from stack.commands import isolated_env

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATE = 30.0
GOAL_P99_MS = 1000.0
GOAL_RSS_MB = 50.0
GOAL_DRAIN_S = 60.0
FINAL = ("confirmed", "rejected", "expired", "cancelled", "refunded")
# What a cash order passes through before it is final.
OPEN = ("accepted", "processing")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="cash orders offered per second (30)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long they are offered (10)")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples (30)")
    parser.add_argument("--drain-s", type=float, default=GOAL_DRAIN_S,
                        help="how long after the last submit every order must be final, follow-ups done (60)")
    parser.add_argument("--customers", type=int, default=200,
                        help="signed-in customers the orders rotate over (200: few enough to sign up in seconds, "
                        "many enough that no one customer meets the per-recipient notification limit)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (16)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the data dir and the stack's log")
    return parser.parse_args(argv)


# --- the stack's processes, by kind ----------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(k) for k in kids]
        frontier += [int(k) for k in kids]
    return found


def kind_of(argv: list[str]) -> str:
    """A process's kind from its command line: what a row of the RSS and CPU tables names."""
    line = " ".join(argv)
    if "redis-server" in line:
        return "redis-server"
    if "nx_27017" in line or "nx-27017" in line:
        return "nx-27017"
    if "celery" in line and " worker" in line:
        queue = re.search(r"-Q[= ]?(\S+)", line)
        return f"worker {queue.group(1) if queue else '?'}"
    for needle, kind in (("beat", "beat"), ("flower", "flower"), ("src.cli", "exporter"),
                         ("outbox_relay", "outbox relay"), ("sandbox.messaging", "sandbox"),
                         ("sandbox.mailbox", "sandbox"), ("-m sandbox", "sandbox"), ("honcho", "runner"),
                         ("-m stack", "runner")):
        if needle in line:
            return kind
    if "gunicorn" in line:
        return "ws (gevent)" if "gevent" in line else "api (gunicorn)"
    return (argv[0].rsplit("/", 1)[-1] if argv else "?") or "?"


@dataclass
class Proc:
    kind: str
    rss_mb: float
    cpu_s: float


def processes(root: int) -> dict[int, Proc]:
    """Every process under the runner: kind, resident MB and CPU seconds so far."""
    seen: dict[int, Proc] = {}
    for pid in [root, *_children(root)]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue  # gone between the listing and the read
        seen[pid] = Proc(kind_of([a for a in argv if a]), rss / 2**20, (int(stat[11]) + int(stat[12])) / _TICK)
    return seen


# --- sampling ----------------------------------------------------------------------------------------------------

@dataclass
class Samples:
    lines: list[str] = field(default_factory=list)
    # queue -> its length at each sample
    lengths: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    # pid -> kind of every process seen (a recycled worker child is gone by the end)
    kinds: dict[int, str] = field(default_factory=dict)


def backlog() -> tuple[list[int], int]:
    """Each queue's waiting messages (in `Queue` order), and the messages workers hold unacked."""
    from kirana import redis_conn
    from tasks.queues import Queue, unacked_key

    pipe = redis_conn.client().pipeline(transaction=False)
    for queue in Queue:
        pipe.llen(queue.value)
    for queue in Queue:
        pipe.hlen(unacked_key(queue))
    found = [int(n) for n in pipe.execute()]
    return found[:len(Queue)], sum(found[len(Queue):])


def sample(at_s: float, since: dict[str, object], stack_pid: int, data_dir: Path, samples: Samples) -> None:
    from kirana import command_counts, db
    from tasks.queues import Queue

    lengths, unacked = backlog()
    counts = command_counts.read(data_dir)
    procs = processes(stack_pid)
    samples.kinds.update({pid: proc.kind for pid, proc in procs.items()})
    cpu = sum(p.cpu_s for p in procs.values())
    # One indexed count per status: nx-27017 answers `$in` by scanning (docs/mongodb-subset.md).
    final = sum(db.database()[db.ORDERS].count_documents({"status": status}) for status in FINAL)
    last_t = float(since.get("t", 0.0))  # type: ignore[arg-type]
    span = max(at_s - last_t, 1e-9)
    before: Counter[str] = since.get("counts", Counter())  # type: ignore[assignment]
    per_collection: Counter[str] = Counter()
    for key, n in (counts - before).items():
        per_collection[key.split(" ", 1)[1]] += n
    total_rate = sum(per_collection.values()) / span
    queues = "  ".join(f"{q.value} {n}" for q, n in zip(Queue, lengths, strict=True) if n) or "all empty"
    top = ", ".join(f"{c} {n / span:.0f}" for c, n in per_collection.most_common(6))
    cpu_share = (cpu - float(since.get("cpu", cpu))) / span  # type: ignore[arg-type]
    line = (f"+{at_s:5.0f}s  final {final:6d}  queues: {queues}  unacked {unacked}\n"
            f"         mongo {total_rate:5.0f} cmd/s ({top})  stack CPU {cpu_share:.2f} cores")
    print(line, flush=True)
    samples.lines.append(line)
    for queue, n in zip(Queue, lengths, strict=True):
        samples.lengths[queue.value].append(int(n))
    since.update(t=at_s, counts=counts, cpu=cpu)


def drained(data_dir: Path) -> bool:
    """Every queue and the unacked hashes empty, no order open or holding an unsent intent."""
    from kirana import db

    lengths, unacked = backlog()
    if any(lengths) or unacked:
        return False
    orders = db.database()[db.ORDERS]
    # Indexed equality and range reads (nx-27017 would scan for `$nin` or `$exists`).
    if orders.find_one({"intents_at_ms": {"$gte": 0}}, {"_id": 1}) is not None:
        return False
    return all(orders.find_one({"status": str(status)}, {"_id": 1}) is None for status in OPEN)


def wait_drained(data_dir: Path, last_submit: float, limit_s: float) -> float | None:
    """Seconds from the last submit until drained(); None when not within `limit_s`."""
    while time.monotonic() - last_submit < limit_s:
        if drained(data_dir):
            return time.monotonic() - last_submit
        time.sleep(0.5)
    return None


def _by_kind(now: dict[int, Counter[str]], before: dict[int, Counter[str]],
             kinds: dict[int, str]) -> dict[str, Counter[str]]:
    """Commands sent during the run by each kind of process, by command and collection."""
    total: dict[str, Counter[str]] = defaultdict(Counter)
    for pid, counts in now.items():
        total[kinds.get(pid, "?")].update(counts - before.get(pid, Counter()))
    return total


# --- the run -----------------------------------------------------------------------------------------------------

def _stack_env(data_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    env, ports = isolated_env(data_dir)
    # Its customers all sign up from 127.0.0.1, past the per-address registration limit.
    return {**env, "MONGO_COMMAND_COUNTS": "1", "REGISTER_PER_ADDRESS_PER_HOUR": "100000"}, ports


def _customers(base: str, n: int) -> list[dict[str, str]]:
    from bench.load import JSON_HEADERS

    def sign_up(i: int) -> dict[str, str]:
        account = {"email": f"soak-{i}-{time.time_ns()}@example.in", "password": "a long enough soak password"}
        requests.post(f"{base}/api/v1/auth/register", json=account, timeout=30).raise_for_status()
        login = requests.post(f"{base}/api/v1/auth/login", json=account, timeout=30)
        login.raise_for_status()
        return {**JSON_HEADERS, "Authorization": f"Bearer {login.json()['access_token']}"}

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(sign_up, range(n)))


def _wait_seeded(timeout: float = 60.0) -> None:
    from kirana import db

    deadline = time.monotonic() + timeout
    while db.database()[db.PRODUCTS].estimated_document_count() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the stack never seeded its catalog")
        time.sleep(0.5)


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def run(args: argparse.Namespace, data_dir: Path) -> int:
    env, ports = _stack_env(data_dir)
    # This process talks to the stack's own servers (set before kirana.config is first read).
    os.environ.update({"REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
                       "MONGO_URL": f"mongodb://127.0.0.1:{ports['mongo']}", "KIRANA_DATA_DIR": str(data_dir)})
    from bench.load import Client, order_bodies
    from bench.procstat import reference_ms, speed_line
    from bench.run import STORE_ID, stock_up
    from kirana import command_counts, db

    print(speed_line(reference_ms()), flush=True)
    log = open(data_dir / "stack.log", "wb")  # noqa: SIM115 (closed in finally)
    runner = subprocess.Popen([sys.executable, "-m", "stack", "run"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{ports['api']}"
    stop = threading.Event()
    try:
        servers.wait_http(f"{base}/readyz", timeout=180)
        _wait_seeded()
        database = db.database()
        skus = stock_up(database)
        headers = _customers(base, args.customers)
        n = int(args.rate * args.minutes * 60)
        bodies = order_bodies(n, STORE_ID, skus, random.Random(args.seed))
        print(f"[soak] the whole stack is up (log {data_dir / 'stack.log'}); offering {n} cash orders at "
              f"{args.rate:g}/s for {args.minutes:g} min, sampling every {args.sample_s:g}s", flush=True)
        time.sleep(5)  # the pools' first heartbeats, beat's first ticks
        baseline = processes(runner.pid)
        counts_before = command_counts.read(data_dir)
        before_by_pid = command_counts.by_process(data_dir)
        client = Client(args.concurrency, stop, "http")
        result: dict[str, object] = {}
        started = time.monotonic()
        loader = threading.Thread(target=lambda: result.update(
            phase=client.run(f"{base}/api/v1/orders", bodies, headers=[headers[i % len(headers)] for i in range(n)],
                             rate=args.rate)), daemon=True)
        loader.start()
        samples, since = Samples(), {"t": 0.0, "counts": counts_before,
                                     "cpu": sum(p.cpu_s for p in baseline.values())}
        while loader.is_alive():
            loader.join(timeout=max(0.0, args.sample_s - (time.monotonic() - started) % args.sample_s))
            if loader.is_alive():  # the load's end is not a sample: its span would be a sliver
                sample(time.monotonic() - started, since, runner.pid, data_dir, samples)
        last_submit = time.monotonic()
        drained_after = wait_drained(data_dir, last_submit, args.drain_s + 60)
        sample(time.monotonic() - started, since, runner.pid, data_dir, samples)
        time.sleep(command_counts.FLUSH_S + 1)
        by_kind = _by_kind(command_counts.by_process(data_dir), before_by_pid, samples.kinds)
        return report(args, Outcome(phase=result["phase"], drained_after=drained_after, samples=samples,  # type: ignore[arg-type]
                                    baseline=baseline, end=processes(runner.pid),
                                    counts=command_counts.read(data_dir) - counts_before, by_kind=by_kind), database)
    finally:
        stop.set()
        try:
            os.killpg(runner.pid, signal.SIGTERM)
            runner.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(runner.pid, signal.SIGKILL)
        log.close()


@dataclass
class Outcome:
    phase: Phase
    drained_after: float | None
    samples: Samples
    baseline: dict[int, Proc]
    end: dict[int, Proc]
    counts: Counter[str]
    by_kind: dict[str, Counter[str]]


def report(args: argparse.Namespace, outcome: Outcome, database: Database) -> int:
    from bench.load import percentile
    from bench.run import confirmation

    phase, drained_after, samples = outcome.phase, outcome.drained_after, outcome.samples
    baseline, end, counts = outcome.baseline, outcome.end, outcome.counts
    order_ids = [loc.rsplit("/", 1)[-1] for loc in phase.locations]
    conf = confirmation(database, order_ids)
    p50, p99 = (percentile(conf.latencies_ms, q) for q in (50, 99))
    sustained = phase.ok / phase.wall_s if phase.wall_s else 0.0
    growing = [q for q, ns in samples.lengths.items() if len(ns) >= 4 and _grows(ns)]
    total = sum(counts.values())
    by_collection: Counter[str] = Counter()
    for key, count in counts.items():
        by_collection[key.split(" ", 1)[1]] += count
    growth: dict[str, float] = {}
    for pid, proc in end.items():
        if pid in baseline:
            growth[proc.kind] = max(growth.get(proc.kind, -1e9), proc.rss_mb - baseline[pid].rss_mb)
    worst = max(growth.values(), default=0.0)
    errors = sum(phase.errors.values())
    drained_ok = drained_after is not None and drained_after <= args.drain_s
    print(f"\n== soak: {args.rate:g} cash orders/s offered for {args.minutes:g} min to make run's whole stack ==")
    print(f"accepted {phase.ok} of {phase.sent} ({sustained:.1f}/s sustained; goal >= {GOAL_RATE:g}/s: "
          f"{_verdict(sustained >= GOAL_RATE * 0.99 and errors == 0)}); errors {errors}"
          + (f" {dict(phase.errors)}" if errors else ""))
    print(f"final with every follow-up done: {conf.confirmed + conf.rejected} of {phase.ok}, "
          + (f"all within {drained_after:.1f}s of the last submit" if drained_after is not None
             else f"NOT all within {args.drain_s + 60:.0f}s ({conf.unfinished} orders still open)")
          + f" (goal <= {args.drain_s:g}s: {_verdict(drained_ok)})")
    print(f"submit->confirmed p50 {p50:.0f} ms  p99 {p99:.0f} ms (goal p99 <= {GOAL_P99_MS:g} ms: "
          f"{_verdict(p99 <= GOAL_P99_MS)})")
    print("queues that grew through the run: " + (", ".join(growing) if growing else "none") +
          f" ({_verdict(not growing)})")
    print(f"MongoDB commands per order, follow-ups and the stack's own upkeep included: {total / max(phase.ok, 1):.1f}"
          " (the order's own path: bench/round_trips.py)")
    for collection, count in by_collection.most_common():
        print(f"    {collection:28s} {count / max(phase.ok, 1):6.2f} per order")
    print("  by the process that sent them, per order (its commonest commands):")
    for kind, kinds in sorted(outcome.by_kind.items(), key=lambda item: -item[1].total()):
        if kinds.total() >= phase.ok / 100:
            top = ", ".join(f"{key} {n / max(phase.ok, 1):.2f}" for key, n in kinds.most_common(6))
            print(f"    {kind:22s} {kinds.total() / max(phase.ok, 1):5.1f}   ({top})")
    print(f"RSS growth by process kind, largest process of the kind (goal <= {GOAL_RSS_MB:g} MB: "
          f"{_verdict(worst <= GOAL_RSS_MB)}):")
    cpu: Counter[str] = Counter()
    for pid, proc in end.items():
        cpu[proc.kind] += proc.cpu_s - (baseline[pid].cpu_s if pid in baseline else 0.0)
    for kind in sorted(growth, key=lambda k: -growth[k]):
        print(f"    {kind:28s} {growth[kind]:+7.1f} MB   CPU {cpu[kind] / max(phase.wall_s, 1e-9):.2f} cores")
    ok = sustained >= GOAL_RATE * 0.99 and errors == 0 and drained_ok and p99 <= GOAL_P99_MS and not growing
    return 0 if ok and worst <= GOAL_RSS_MB else 1


def _grows(lengths: list[int]) -> bool:
    """A queue grows through the run when the last third of its samples stays above the first third's peak."""
    third = max(1, len(lengths) // 3)
    return min(lengths[-third:]) > max(*lengths[:third], 50)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="kirana-soak-"))
    signal.signal(signal.SIGTERM, _terminate)  # `timeout` or a supervisor: stop the stack as Ctrl-C does
    try:
        return run(args, data_dir)
    except KeyboardInterrupt:
        print("\n[soak] interrupted; the stack is stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"[soak] data and the stack's log kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
