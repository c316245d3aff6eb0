"""The webhook ingest phase: signed, distinct Razorpay events POSTed to /webhooks/razorpay.

The events name payments that do not exist, so a worker that handles them
records `unknown_payment`: what is measured is ingest (signature check, one
insert into `webhook_events`, one publish to the webhooks queue, the answer).

Afterwards it checks that every accepted event was stored exactly once and
that re-posting some of them answers "duplicate" and stores nothing, and it
times the ingest's parts on their own (`breakdown`) to tell which one limits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis
from celery import Celery
from pymongo.database import Database

from bench.load import Client, Phase
from bench.procstat import CpuMeter, connections_per_process
from kirana.config import Settings
from kirana.payments import WEBHOOK_EVENTS
from tasks.queues import Queue

PATH = "/webhooks/razorpay"
API = "api (gunicorn)"  # the API's name in the bench's sessions
POOL = "webhooks"
QUEUE = Queue.WEBHOOKS.value
GOAL_RATE = 1000.0
GOAL_P99_MS = 50.0
REPOST = 100
DRAIN_TIMEOUT_S = 180.0
_ALNUM = string.ascii_letters + string.digits
# kombu's Redis transport keeps delivered, not yet acked messages in this hash.
UNACKED_KEY = "unacked"


@dataclass(frozen=True)
class Events:
    """Bodies and the headers that go with each, built before any clock starts."""

    ids: list[str]
    bodies: list[bytes]
    headers: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.ids)

    def first(self, n: int) -> Events:
        return Events(self.ids[:n], self.bodies[:n], self.headers[:n])


def signature(secret: str, body: bytes) -> str:
    """What Razorpay sends as X-Razorpay-Signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _rid(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choices(_ALNUM, k=14))


def make_events(n: int, rng: random.Random, secret: str, taken: set[str]) -> Events:
    """`n` payment.captured events with event ids not in `taken` (which they join)."""
    ids, bodies, headers = [], [], []
    created_at = int(time.time())
    while len(ids) < n:
        event_id = _rid(rng, "evt_")
        if event_id in taken:
            continue
        taken.add(event_id)
        event = {
            "entity": "event",
            "account_id": "acc_bench",
            "event": "payment.captured",
            "contains": ["payment"],
            "payload": {"payment": {"entity": {
                "id": _rid(rng, "pay_"), "order_id": _rid(rng, "order_"),
                "amount": 10000, "currency": "INR", "status": "captured",
            }}},
            "created_at": created_at,
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        ids.append(event_id)
        bodies.append(body)
        headers.append({
            "Content-Type": "application/json",
            "X-Razorpay-Event-Id": event_id,
            "X-Razorpay-Signature": signature(secret, body),
        })
    return Events(ids, bodies, headers)


def status_of(content: bytes) -> str:
    """The answer's "status" ("accepted" / "duplicate"), or what else it was."""
    try:
        answer = json.loads(content)
    except ValueError:
        return "not JSON"
    return str(answer.get("status", "no status")) if isinstance(answer, dict) else "not an object"


@dataclass
class Result:
    phase: Phase
    cpu: CpuMeter
    consumed: bool
    stored_new: int
    repost: Phase
    repost_stored_new: int
    # With a worker: events handled and by outcome, and how long after the run the queue was empty.
    handled: int = 0
    handled_during_run: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    drained_after_s: float | None = None
    backlog_at_end: int = 0
    # Without one: messages purged.
    purged: int = 0
    # Connections each API worker process held 1 s into the run (an uneven split caps the crowded one at a core).
    connections: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.phase.outcomes.get("accepted", 0)

    @property
    def stored_ok(self) -> bool:
        return self.stored_new == self.accepted

    @property
    def repost_ok(self) -> bool:
        return self.repost.outcomes.get("duplicate", 0) == self.repost.sent and self.repost_stored_new == 0

    @property
    def goal_met(self) -> bool:
        return self.phase.rate >= GOAL_RATE and self.phase.percentile(99) < GOAL_P99_MS

    @property
    def failed(self) -> bool:
        handling_failed = self.consumed and (self.drained_after_s is None
                                             or not all_unknown_payment(self.handled, self.outcomes))
        return self.accepted < self.phase.sent or not self.stored_ok or not self.repost_ok or handling_failed


def all_unknown_payment(handled: int, outcomes: dict[str, int]) -> bool:
    """The bench's events name no payment: every event handled must have ended so."""
    return outcomes.get("unknown_payment", 0) == handled


def queue_depth(r: redis.Redis) -> tuple[int, int]:
    """Messages waiting in the webhooks queue, and delivered to a worker but not yet acked."""
    pipe = r.pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.hlen(UNACKED_KEY)
    queued, unacked = pipe.execute()
    return int(queued), int(unacked)


def wait_drained(r: redis.Redis, timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Until the webhooks queue is empty and nothing is delivered but unacked; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue_depth(r) == (0, 0):
            return True
        time.sleep(0.05)
    return False


def purge(celery_app: Celery) -> int:
    with celery_app.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(QUEUE) or 0)


def count(database: Database, query: dict[str, object] | None = None) -> int:
    return database[WEBHOOK_EVENTS].count_documents(query or {})


def handled_outcomes(database: Database, settle_s: float = 10.0) -> tuple[int, dict[str, int]]:
    """Events handled and their outcomes, from one scan; waits up to `settle_s` for the last writes to show
    (nx-27017 may answer a write before another connection sees it)."""
    deadline = time.monotonic() + settle_s
    while True:
        docs = list(database[WEBHOOK_EVENTS].find({}, {"status": 1, "outcome": 1}))
        statuses = Counter(doc.get("status") for doc in docs)
        if not statuses.get("received") or time.monotonic() > deadline:
            outcomes = Counter(str(doc["outcome"]) for doc in docs if "outcome" in doc)
            return statuses.get("handled", 0), dict(outcomes.most_common())
        time.sleep(0.2)


def run_phase(*, url: str, client: Client, database: Database, r: redis.Redis, cfg: Settings, rng: random.Random,
              n: int, warmup: int, consumed: bool, sessions: dict[str, int], purge_after: bool = True) -> Result:
    """Warm up, then POST `n` events; check what was stored; re-post some.

    With `consumed` (a webhooks worker running) waits for it to drain the queue after;
    without, purges the queue when `purge_after`, or leaves it for a worker started later (`drain`).
    """
    from tasks.app import app as celery_app

    taken: set[str] = set()
    warm = make_events(warmup, rng, cfg.razorpay_webhook_secret, taken)
    events = make_events(n, rng, cfg.razorpay_webhook_secret, taken)
    if warmup:
        _log(f"webhooks warmup: {warmup} events")
        client.run(url, warm.bodies, expect=200, headers=warm.headers)
        if consumed:
            wait_drained(r)
    before = count(database)
    handled_before = count(database, {"status": "handled"}) if consumed else 0
    _log(f"webhooks: {n} events at concurrency {client.concurrency}"
         f" ({'1 webhooks worker consuming' if consumed else 'queue left unconsumed'})")
    meter = CpuMeter(sessions)
    split: dict[int, int] = {}
    api_port = urlsplit(url).port
    look = threading.Timer(1.0, lambda: split.update(connections_per_process(sessions[API], api_port or 80)))
    meter.start()
    look.start()
    phase = client.run(url, events.bodies, expect=200, headers=events.headers, classify=status_of)
    meter.stop()
    look.cancel()
    ended = time.monotonic()
    backlog = queue_depth(r)[0]
    handled_during_run = count(database, {"status": "handled"}) - handled_before if consumed else 0
    after = count(database)
    _log(f"webhooks: {phase.rate:.1f} events/s; re-posting {REPOST} of them")
    again = events.first(min(REPOST, n))
    repost = client.run(url, again.bodies, expect=200, headers=again.headers, classify=status_of)
    result = Result(phase=phase, cpu=meter, consumed=consumed, stored_new=after - before, repost=repost,
                    repost_stored_new=count(database) - after, backlog_at_end=backlog,
                    handled_during_run=handled_during_run, connections=sorted(split.values(), reverse=True))
    if consumed:
        _log(f"webhooks: waiting (<= {DRAIN_TIMEOUT_S:.0f}s) for the worker to handle a backlog of {backlog}")
        if wait_drained(r):
            result.drained_after_s = time.monotonic() - ended
        result.handled, result.outcomes = handled_outcomes(database)
    elif purge_after:
        result.purged = purge(celery_app)
    return result


@dataclass
class Drain:
    """A webhooks worker started on a backlog: how fast it handled it."""

    backlog: int  # events waiting to be handled when the worker was ready
    seconds: float | None  # until the queue was empty and every event handled; None on timeout
    handled: int
    outcomes: dict[str, int]

    @property
    def rate(self) -> float:
        return self.backlog / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> bool:
        return self.seconds is None or not all_unknown_payment(self.handled, self.outcomes)


def drain(database: Database, r: redis.Redis, started: float) -> Drain:
    """Wait until the worker (ready at `started`, time.monotonic) has handled every stored event."""
    backlog = count(database, {"status": "received"})
    _log(f"webhooks: the worker drains a backlog of {backlog} events (<= {DRAIN_TIMEOUT_S:.0f}s)")
    # Tasks are acked late: an empty queue with nothing unacked means every one has run.
    done = wait_drained(r, timeout=started + DRAIN_TIMEOUT_S - time.monotonic())
    seconds = time.monotonic() - started if done else None
    handled, outcomes = handled_outcomes(database)
    return Drain(backlog=backlog, seconds=seconds, handled=handled, outcomes=outcomes)


# --- what the ingest's parts cost on their own -------------------------------------------------


def _timed(label: str, calls: Sequence[Callable[[], object]], sessions: dict[str, int], *,
           threads: int = 1, warm: int = 20) -> str:
    """Run `calls` (after `warm` uncounted ones) from `threads` threads; one line of ms per call."""
    for call in calls[:warm]:
        call()
    todo = list(calls[warm:])
    lock = threading.Lock()
    it = iter(todo)

    def work() -> None:
        while True:
            with lock:
                call = next(it, None)
            if call is None:
                return
            call()

    meter = CpuMeter(sessions)
    meter.start()
    if threads == 1:
        work()
    else:
        pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    meter.stop()
    k = len(todo)
    cpu = "  ".join(f"{name} {used * 1000 / k:.2f}" for name, used in meter.used_s.items() if used > 0)
    return (f"  {label:<44}{k / meter.wall_s:>8.0f}/s {meter.wall_s * 1000 / k:>7.2f} ms wall/call"
            f"  CPU ms/call: {cpu}  [others on the machine: {meter.others_s / meter.wall_s:.2f} cores]")


def _timed_http(label: str, client: Client, url: str, events: Events, sessions: dict[str, int], *,
                expect: int, corrupt: bool = False) -> str:
    """POST `events` through the API (with a wrong signature if `corrupt`); one line of ms per request."""
    headers = events.headers
    if corrupt:
        headers = [{**h, "X-Razorpay-Signature": "0" * 64} for h in headers]
    meter = CpuMeter(sessions)
    meter.start()
    phase = client.run(url, events.bodies, expect=expect, headers=headers)
    meter.stop()
    k = max(phase.ok, 1)
    cpu = "  ".join(f"{name} {used * 1000 / k:.2f}" for name, used in meter.used_s.items() if used > 0)
    failed = f" ({phase.sent - phase.ok} failed)" if phase.ok < phase.sent else ""
    return (f"  {label:<44}{phase.rate:>8.0f}/s p50 {phase.percentile(50):.1f} p99 {phase.percentile(99):.1f} ms"
            f"{failed}  CPU ms/request: {cpu}  [others on the machine: {meter.others_s / meter.wall_s:.2f} cores]")


def breakdown(*, database: Database, cfg: Settings, rng: random.Random, sessions: dict[str, int],
              client: Client, url: str, n: int = 1000, threads: int = 8) -> list[str]:
    """The parts of one ingest on their own: through the API with less and less of the view's work,
    then each part in a loop from this process (no HTTP).

    Run after the phase with the webhooks worker stopped; the messages it
    publishes are purged after.
    """
    from api import create_app
    from kirana import gateway, webhooks
    from tasks.app import app as celery_app
    from tasks.webhooks import handle

    secret = cfg.razorpay_webhook_secret
    secrets = (secret, cfg.razorpay_webhook_secret_previous)
    taken: set[str] = set()
    lines = [f"breakdown, worker stopped: {n} requests each through the API at concurrency {client.concurrency}"]
    ev = make_events(n, rng, secret, taken)
    lines.append(_timed_http("new events (verify, store, enqueue)", client, url, ev, sessions, expect=200))
    lines.append(_timed_http("the same again (verify, store finds duplicate)", client, url, ev, sessions,
                             expect=200))
    lines.append(_timed_http("bad signature (HTTP + Flask + HMAC, 400)", client, url, ev, sessions, expect=400,
                             corrupt=True))
    lines.append(f"breakdown: {n} calls each, from the bench process (its CPU is 'load generator'), no HTTP")

    ev = make_events(n, rng, secret, taken)
    sigs = [h["X-Razorpay-Signature"] for h in ev.headers]
    lines.append(_timed("signature check + json.loads (in-process)", [
        (lambda b=b, s=s: (gateway.webhook_signature_valid(secrets, b, s), json.loads(b)))
        for b, s in zip(ev.bodies, sigs, strict=True)], sessions))

    ev = make_events(n, rng, secret, taken)
    lines.append(_timed("webhooks.store -> nx-27017, 1 thread", [
        (lambda b=b, i=i: webhooks.store(database, b, i)) for b, i in zip(ev.bodies, ev.ids, strict=True)],
        sessions))
    ev = make_events(n, rng, secret, taken)
    lines.append(_timed(f"webhooks.store -> nx-27017, {threads} threads", [
        (lambda b=b, i=i: webhooks.store(database, b, i)) for b, i in zip(ev.bodies, ev.ids, strict=True)],
        sessions, threads=threads))
    ev = make_events(n, rng, secret, taken)
    for b, i in zip(ev.bodies, ev.ids, strict=True):
        webhooks.store(database, b, i)
    lines.append(_timed("webhooks.store of a duplicate, 1 thread", [
        (lambda b=b, i=i: webhooks.store(database, b, i)) for b, i in zip(ev.bodies, ev.ids, strict=True)],
        sessions))

    lines.append(_timed("handle.delay -> redis, 1 thread", [
        (lambda i=i: handle.delay(i)) for i in ev.ids], sessions))
    lines.append(_timed(f"handle.delay -> redis, {threads} threads", [
        (lambda i=i: handle.delay(i)) for i in ev.ids], sessions, threads=threads))
    # What the "task-sent" event (task_send_sent_event=True, for Flower) adds to each publish: switched
    # off in this process only, for this one loop.
    sent_event = celery_app.conf.task_send_sent_event
    celery_app.conf.task_send_sent_event = False
    try:
        lines.append(_timed("handle.delay, no task-sent event, 1 thread", [
            (lambda i=i: handle.delay(i)) for i in ev.ids], sessions))
    finally:
        celery_app.conf.task_send_sent_event = sent_event
    lines.append(_timed("webhooks.handle (task body, no Celery)", [
        (lambda i=i: webhooks.handle(database, i)) for i in ev.ids], sessions))

    app = create_app()
    web = app.test_client()
    ev = make_events(n, rng, secret, taken)
    lines.append(_timed("whole view via Flask test_client, 1 thread", [
        (lambda b=b, h=h: web.post(PATH, data=b, headers=h)) for b, h in zip(ev.bodies, ev.headers, strict=True)],
        sessions))
    lines.append(f"  (purged {purge(celery_app)} messages the breakdown published)")
    return lines


def _row(label: str, phase: Phase) -> str:
    errors = ""
    if phase.errors:
        errors = "  (" + ", ".join(f"{kind} x{k}" for kind, k in phase.errors.most_common()) + ")"
    return f"{label:<52}{phase.rate:>9.1f}{phase.percentile(50):>9.1f}{phase.percentile(99):>9.1f}{errors}"


def _checks(label: str, result: Result) -> list[str]:
    phase = result.phase
    answered = ", ".join(f"{outcome} {k}" for outcome, k in phase.outcomes.most_common())
    return [
        f"{label}: answered 200 {phase.ok} of {phase.sent} ({answered or 'none'});"
        f" {result.stored_new} new {WEBHOOK_EVENTS} documents for {result.accepted} accepted"
        f" -> {'OK' if result.stored_ok else 'MISMATCH'}",
        f"{label}: re-posted {result.repost.sent}: "
        + ", ".join(f"{outcome} {k}" for outcome, k in result.repost.outcomes.most_common())
        + (f", failed {result.repost.sent - result.repost.ok}" if result.repost.ok < result.repost.sent else "")
        + f"; {result.repost_stored_new} new documents -> {'OK' if result.repost_ok else 'FAILED'}",
    ]


def _cpu_lines(label: str, result: Result) -> list[str]:
    phase, cpu = result.phase, result.cpu
    if not phase.ok or not cpu.used_s:
        return []
    total = sum(cpu.used_s.values())
    parts = "  ".join(f"{name} {used * 1000 / phase.ok:.2f}" for name, used in cpu.used_s.items())
    cores = os.cpu_count() or 1
    lines = [
        f"{label}: CPU ms per accepted event: {parts}  = {total * 1000 / phase.ok:.2f}"
        f" (1000 events/s on {cores} cores needs <= {cores:.2f})",
        f"{label}: {cpu.machine_s / cpu.wall_s:.2f} of {cores} cores busy, {total / cpu.wall_s:.2f} by the bench's"
        f" processes and {cpu.others_s / cpu.wall_s:.2f} by others"
        + (" (numbers distorted by other work)" if cpu.others_s > 0.1 * cpu.wall_s else ""),
    ]
    if result.connections:
        lines.append(f"{label}: connections per API worker process 1 s into the run:"
                     f" {' / '.join(map(str, result.connections))}")
    worker_s = cpu.used_s.get("webhooks worker", 0.0)
    if result.consumed and result.handled_during_run and worker_s:
        lines.append(f"{label}: webhooks worker {worker_s * 1000 / result.handled_during_run:.2f} ms CPU per event"
                     " it handled during the run (its nx-27017 reads and writes are in nx-27017's share)")
    return lines


def report(alone: Result, *, drained: Drain | None, shared: Result | None, concurrency: int, client: str,
           server: str, pool_desc: str, breakdown: list[str]) -> str:
    """The table: ingest alone (the goal's figure), the worker draining what it stored, ingest beside the worker."""
    lines = [
        f"kirana bench: webhook ingest, concurrency {concurrency} ({client} sessions), {server};"
        f" webhooks worker {pool_desc}",
        f"{'POST ' + PATH:<52}{'events/s':>9}{'p50 ms':>9}{'p99 ms':>9}",
        _row(f"ingest alone (handling paused), {alone.phase.sent} events", alone.phase),
    ]
    if shared is not None:
        lines.append(_row(f"ingest while the worker handles, {shared.phase.sent} events", shared.phase))
    lines.append(f"goal (ingest): >= {GOAL_RATE:.0f} events/s, p99 < {GOAL_P99_MS:.0f} ms -> "
                 f"{'MET' if alone.goal_met else 'NOT MET'}")
    lines.extend(_checks("ingest alone", alone))
    if drained is not None:
        outcomes = ", ".join(f"{k} {v}" for k, v in drained.outcomes.items())
        took = (f"in {drained.seconds:.1f}s: {drained.rate:.0f} events/s" if drained.seconds is not None
                else f"NOT within {DRAIN_TIMEOUT_S:.0f}s")
        lines.append(f"drain: 1 webhooks worker started on the backlog of {drained.backlog} events handled it {took};"
                     f" {drained.handled} events handled in all ({outcomes})")
    else:
        lines.append(f"queue: purged {alone.purged} unconsumed webhooks.handle messages (warmup included)")
    lines.extend(_cpu_lines("ingest alone", alone))
    if shared is not None:
        lines.extend(_checks("ingest beside the worker", shared))
        finished = (f"queue empty {shared.drained_after_s:.1f}s after the run" if shared.drained_after_s is not None
                    else f"queue NOT empty after {DRAIN_TIMEOUT_S:.0f}s")
        outcomes = ", ".join(f"{k} {v}" for k, v in shared.outcomes.items())
        lines.append(f"ingest beside the worker: it handled {shared.handled_during_run} during the run, backlog"
                     f" {shared.backlog_at_end} at its end, {finished}; {shared.handled} events handled in all"
                     f" ({outcomes})")
        lines.extend(_cpu_lines("ingest beside the worker", shared))
    lines.extend(breakdown)
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
