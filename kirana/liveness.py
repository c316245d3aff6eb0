"""Which worker pools are alive: each worker beats into a Redis sorted set.

One sorted set per pool maps worker name -> last beat (epoch ms). Readiness
asks whether every pool has a member that beat within the window; a worker
that died simply stops beating, so nothing has to clean up after it.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from kirana.clock import now_ms

KEY = "kirana:alive:{pool}"


def pool_of(worker_name: str) -> str:
    """The pool a worker belongs to: workers are named ``<pool>@<host>``."""
    return worker_name.split("@", 1)[0]


def beat(r: redis.Redis, worker_name: str, *, at_ms: int | None = None) -> None:
    key = KEY.format(pool=pool_of(worker_name))
    pipe = r.pipeline(transaction=False)
    pipe.zadd(key, {worker_name: at_ms if at_ms is not None else now_ms()})
    # A pool that is gone for a day leaves no key behind.
    pipe.expire(key, 86_400)
    pipe.execute()


def depart(r: redis.Redis, worker_name: str) -> None:
    r.zrem(KEY.format(pool=pool_of(worker_name)), worker_name)


def alive(r: redis.Redis, pools: Iterable[str], window_s: float) -> dict[str, int]:
    """Number of workers per pool seen within `window_s` seconds."""
    since = now_ms() - int(window_s * 1000)
    pipe = r.pipeline(transaction=False)
    names = list(pools)
    for pool in names:
        pipe.zcount(KEY.format(pool=pool), since, "+inf")
    return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))


PROGRESS = "kirana:progress:{pool}"


def progressed(r: redis.Redis, worker_name: str, *, at_ms: int | None = None) -> None:
    """A worker of the pool finished a task (called from the process that ran it)."""
    key = PROGRESS.format(pool=pool_of(worker_name))
    pipe = r.pipeline(transaction=False)
    pipe.hset(key, worker_name, at_ms if at_ms is not None else now_ms())
    pipe.expire(key, 86_400)
    pipe.execute()


def pool_health(r: redis.Redis, pools: Iterable[str], *, alive_window_s: float,
                stall_after_s: dict[str, float]) -> dict[str, dict[str, object]]:
    """Per pool: live workers, queue length, age of the last finished task, and a verdict.

    A pool is "stalled" when its queue has work and no worker of it finished a
    task for longer than its stall window (its longest task): up, but not consuming.
    """
    names = list(pools)
    alive_now = alive(r, names, alive_window_s)
    pipe = r.pipeline(transaction=False)
    for pool in names:
        pipe.llen(pool)
        pipe.hvals(PROGRESS.format(pool=pool))
    answers = pipe.execute()
    now = now_ms()
    report: dict[str, dict[str, object]] = {}
    for i, pool in enumerate(names):
        queued = int(answers[2 * i])
        last = max((int(v) for v in answers[2 * i + 1]), default=None)
        idle_s = None if last is None else round((now - last) / 1000, 1)
        if alive_now[pool] == 0:
            verdict = "down"
        elif queued and (idle_s is None or idle_s > stall_after_s.get(pool, 60)):
            verdict = "stalled"
        else:
            verdict = "ok"
        report[pool] = {"workers": alive_now[pool], "queued": queued, "last_progress_s_ago": idle_s,
                        "verdict": verdict}
    return report
