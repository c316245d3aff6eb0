"""`python -m bench.engine [--tasks N] [--enqueue M] [--only a,b,c,d]`: Kirana's Celery beside stock Celery,
Dramatiq and Huey, on one private redis-server and the same cores, in one run.

For each engine: a producer process enqueues the no-op tasks while no
worker runs (its enqueue rate), then the engine's worker starts and drains
them; the drain is timed from the first task taken to the last one done
(so the worker's start-up is not counted), and the worker's CPU (all its
processes, from /proc) over that span is divided by the tasks.

  (a) stock Celery: bench.engine_stock, every setting at its default (prefork, -c = cores)
  (b) Kirana: the orders pool of workers/pools.py (its exact command line and log level), the real
      tasks.app configuration, tasks.base.KiranaTask and every signal receiver, task events on
  (c) Dramatiq and (d) Huey: bench.engine_rivals, in the bench-only virtualenv `.venv-bench`
      (created on first use from bench/engine-constraints.txt; never in the product's requirements)

Plus Kirana's batched enqueue path (tasks.reliability.enqueue_many), whose
messages are purged. Messages are the same size class in all four (one int
argument); the redis-server is configured as in production (AOF, everysec).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis

from bench.procstat import CpuMeter, machine_busy_s, reference_ms, speed_line
from kirana.config import ROOT
from stack import servers

BENCH_VENV = ROOT / ".venv-bench"
CONSTRAINTS = ROOT / "bench" / "engine-constraints.txt"
RIVAL_PACKAGES = ("dramatiq", "huey", "redis")
POLL_S = 0.002
DRAIN_TIMEOUT_S = 300.0
ENGINES = ("a", "b", "c", "d", "e")


def log(message: str) -> None:
    print(f"[bench.engine] {message}", file=sys.stderr, flush=True)


def ensure_bench_venv() -> Path:
    """The bench-only virtualenv's python, created and filled from the pinned constraints if missing."""
    python = BENCH_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run([str(python), "-c", "import dramatiq, huey"], check=False,
                               capture_output=True)
        if check.returncode == 0:
            return python
    log(f"creating {BENCH_VENV} (dramatiq, huey) from {CONSTRAINTS.name}")
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    pins = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    wanted = [pin for pin in pins if pin and pin.split("==")[0] in RIVAL_PACKAGES]
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), *wanted], check=True)
    return python


@dataclass
class Result:
    engine: str
    label: str
    config: str
    tasks: int = 0
    drain_s: float = 0.0
    worker_cpu_s: float = 0.0
    others_cpu_s: float = 0.0
    enqueue: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.tasks / self.drain_s if self.drain_s else 0.0

    @property
    def cpu_us(self) -> float:
        return self.worker_cpu_s / self.tasks * 1e6 if self.tasks else 0.0


@dataclass(frozen=True)
class Engine:
    key: str
    label: str
    config: str
    produce: list[str]
    worker: list[str]
    # Work not yet done, from Redis: queued plus taken-but-unacked.
    pending: Callable[[redis.Redis], int]
    env: dict[str, str]


def _llen_plus_hlen(queue: str, unacked: str) -> Callable[[redis.Redis], int]:
    def pending(r: redis.Redis) -> int:
        pipe = r.pipeline(transaction=False)
        pipe.llen(queue)
        pipe.hlen(unacked)
        queued, taken = pipe.execute()
        return int(queued) + int(taken)

    return pending


def engines(py: str, bench_py: str, redis_url: str, cores: int) -> dict[str, Engine]:
    from bench.engine_rivals import DRAMATIQ_PENDING_HASH, HUEY_QUEUE
    from workers.pools import BY_NAME, worker_command

    base = servers.process_env(redis_url, os.environ.get("MONGO_URL", "mongodb://127.0.0.1:1"),
                               BENCH_REDIS_URL=redis_url)
    base.pop("KIRANA_WORKER_LOGLEVEL", None)  # the pool table's own log level, as in production
    kirana_env = {**base, "KIRANA_EXTRA_TASK_MODULES": "bench.engine_tasks"}
    orders = BY_NAME["orders"]
    # The same argv make run, compose and k8s use, with this interpreter.
    kirana_worker = worker_command(orders, python=py)
    return {
        "a": Engine("a", "stock Celery", f"prefork -c {cores}, defaults", [py, "-m", "bench.engine_produce", "stock"],
                    [py, "-m", "celery", "-A", "bench.engine_stock", "worker", "-c", str(cores)],
                    _llen_plus_hlen("celery", "unacked"), base),
        "b": Engine("b", "Kirana", f"orders pool: {orders.pool} -c {orders.env_concurrency()}, "
                    f"-l {orders.loglevel}, acks late, events on",
                    [py, "-m", "bench.engine_produce", "kirana"], kirana_worker,
                    _llen_plus_hlen("orders", "unacked:orders"), kirana_env),
        "c": Engine("c", "Dramatiq", f"-p {cores} (threads: default)",
                    [bench_py, "-m", "bench.engine_rivals", "produce", "dramatiq"],
                    [bench_py, "-m", "dramatiq", "bench.engine_rivals:dramatiq_app", "-p", str(cores)],
                    lambda r: int(r.hlen(DRAMATIQ_PENDING_HASH)), {**base, "BENCH_RIVAL": "dramatiq"}),
        "d": Engine("d", "Huey", f"-k process -w {cores}",
                    [bench_py, "-m", "bench.engine_rivals", "produce", "huey"],
                    [str(Path(bench_py).with_name("huey_consumer")), "bench.engine_rivals.huey_app",
                     "-k", "process", "-w", str(cores)],
                    lambda r: int(r.llen(HUEY_QUEUE)), {**base, "BENCH_RIVAL": "huey"}),
        "e": Engine("e", "Celery, leanest", f"{cores} x solo pool, acks early, prefetch 64, events off",
                    [py, "-m", "bench.engine_produce", "floor"],
                    ["sh", "-c", " & ".join(
                        f"{py} -m celery -A bench.engine_floor worker -P solo -l WARNING -n floor{i}@%h "
                        "--without-gossip --without-mingle --without-heartbeat" for i in range(cores)) + " & wait"],
                    _llen_plus_hlen("celery", "unacked"), base),
    }


def produce(argv: list[str], n: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([*argv, str(n)], check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats["rate"] = stats["n"] / stats["wall_s"]
    stats["cpu_us"] = stats["cpu_s"] / stats["n"] * 1e6
    return stats


def drain(engine: Engine, r: redis.Redis, expected: int, logdir: Path) -> tuple[float, CpuMeter, int]:
    """Start the worker on a full queue; (seconds from the first task taken to the last done, meter, tasks)."""
    before = engine.pending(r)
    if before < expected:
        raise RuntimeError(f"{engine.label}: {before} tasks queued, expected {expected}")
    worker = servers.Server(f"worker-{engine.key}", engine.worker, None, env=engine.env,
                            log=logdir / f"worker-{engine.key}.log", cwd=ROOT)
    worker.start()
    assert worker.proc is not None
    meter = CpuMeter({"worker": worker.proc.pid})
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while engine.pending(r) >= before:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"{engine.label} worker exited; see {worker.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{engine.label} took nothing in {DRAIN_TIMEOUT_S:.0f}s; see {worker.log}")
            time.sleep(POLL_S)
        meter.start()
        while (left := engine.pending(r)) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{engine.label}: {left} tasks left after {DRAIN_TIMEOUT_S:.0f}s")
            time.sleep(POLL_S)
        meter.stop()
    finally:
        worker.stop()
    return meter.wall_s, meter, before


def run_engine(engine: Engine, r: redis.Redis, n: int, logdir: Path) -> Result:
    r.flushdb()
    result = Result(engine.key, engine.label, engine.config)
    log(f"({engine.key}) {engine.label}: enqueue {n}")
    result.enqueue = produce(engine.produce, n, engine.env)
    log(f"({engine.key}) {engine.label}: drain with {' '.join(engine.worker[1:6])} ...")
    wall, meter, tasks = drain(engine, r, int(result.enqueue["queued"]), logdir)
    result.tasks, result.drain_s = tasks, wall
    result.worker_cpu_s = meter.used_s["worker"]
    result.others_cpu_s = meter.others_s
    log(f"({engine.key}) {result.rate:,.0f} tasks/s, {result.cpu_us:,.0f} µs worker CPU per task")
    return result


def ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}×" if y else "n/a"


def table(results: dict[str, Result], batch: dict[str, float] | None, n: int, cores: int, load: str) -> str:
    lines = [
        f"Task-queue engines, {n} no-op tasks each, one private redis-server (AOF everysec), {cores} cores; "
        f"load average before the run: {load}",
        "",
        "| engine | worker configuration | drained tasks/s | worker CPU µs/task | enqueue tasks/s "
        "(1 producer) | producer CPU µs/task | other CPU during drain (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in ENGINES:
        res = results.get(key)
        if res is None:
            continue
        lines.append(f"| ({key}) {res.label} | {res.config} | {res.rate:,.0f} | {res.cpu_us:,.0f} | "
                     f"{res.enqueue['rate']:,.0f} | {res.enqueue['cpu_us']:,.0f} | {res.others_cpu_s:.1f} |")
    if batch:
        lines.append(f"| (b) Kirana, batched enqueue | tasks.reliability.enqueue_many | – | – | "
                     f"{batch['rate']:,.0f} | {batch['cpu_us']:,.0f} | – |")
    b = results.get("b")
    if b is not None:
        lines.append("")
        parts = []
        for key in ("a", "c", "d", "e"):
            other = results.get(key)
            if other is not None:
                parts.append(f"(b)/({key}) drain {ratio(b.rate, other.rate)}, CPU/task {ratio(b.cpu_us, other.cpu_us)}")
        a = results.get("a")
        if a is not None:
            parts.append(f"(b)/(a) enqueue {ratio(b.enqueue['rate'], a.enqueue['rate'])}")
            if batch:
                parts.append(f"batched/(a) enqueue {ratio(batch['rate'], a.enqueue['rate'])}")
        lines.append("Ratios: " + "; ".join(parts))
    e = results.get("e")
    if e is not None:
        rivals = [f"(e)/({key}) drain {ratio(e.rate, results[key].rate)}" for key in ("c", "d") if key in results]
        lines.append("Celery's ceiling on this machine (e): " + ("; ".join(rivals) or f"{e.rate:,.0f} tasks/s"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks per engine (5000)")
    parser.add_argument("--only", default="a,b,c,d,e", help="engines to run, comma separated (a,b,c,d,e)")
    parser.add_argument("--no-batch", dest="batch", action="store_false", help="skip the batched enqueue path")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and the worker logs")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that the finally blocks stop every worker started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    only = [key for key in args.only.split(",") if key]
    if set(only) - set(ENGINES):
        raise SystemExit(f"--only takes {','.join(ENGINES)}")
    cores = os.cpu_count() or 1
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    speed = reference_ms()
    bench_py = str(ensure_bench_venv()) if {"c", "d"} & set(only) else sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="kirana-bench-engine-"))
    port = servers.free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    os.environ["REDIS_URL"] = redis_url
    results: dict[str, Result] = {}
    batch: dict[str, float] | None = None
    busy0, t0 = machine_busy_s(), time.monotonic()
    try:
        with servers.Server("redis", servers.redis_command(port, tmp), port, log=tmp / "redis.log"):
            r = redis.Redis.from_url(redis_url)
            table_of = engines(sys.executable, bench_py, redis_url, cores)
            for key in only:
                results[key] = run_engine(table_of[key], r, args.tasks, tmp)
            if args.batch and "b" in only:
                r.flushdb()
                kirana = table_of["b"]
                batch = produce([sys.executable, "-m", "bench.engine_produce", "kirana-batch"], args.tasks,
                                kirana.env)
                log(f"(b) batched enqueue: {batch['rate']:,.0f} tasks/s")
                r.flushdb()
    finally:
        if args.keep:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print(table(results, batch, args.tasks, cores, load))
    print(speed_line(speed))
    print(f"\nMachine busy {machine_busy_s() - busy0:.0f} CPU-s of {elapsed * cores:.0f} over the run "
          f"({elapsed:.0f} s); load average after: " + "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
