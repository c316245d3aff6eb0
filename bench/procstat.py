"""CPU time of the processes the bench started, from /proc (no psutil).

Every `stack.servers.Server` runs in a session of its own (start_new_session),
so a server's processes (gunicorn's master and workers, say) are exactly the
processes whose session id is the pid the bench started.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields after "(comm)" in /proc/<pid>/stat, 0-based: state, ppid, pgrp, session, ... utime(11), stime(12).
_SESSION, _UTIME, _STIME = 3, 11, 12


def session_cpu_s(sessions: Mapping[str, int]) -> dict[str, float]:
    """User+system CPU seconds so far of the live processes in each named session."""
    by_sid = {sid: name for name, sid in sessions.items()}
    totals = dict.fromkeys(sessions, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        name = by_sid.get(int(fields[_SESSION]))
        if name is not None:
            totals[name] += (int(fields[_UTIME]) + int(fields[_STIME])) / CLOCK_TICKS
    return totals


def _reference_work() -> None:
    for i in range(40_000):
        doc = {"_id": f"evt_{i}", "amount": i * 100, "items": [i, i + 1], "ok": True}
        json.loads(json.dumps(doc))


def reference_ms() -> float:
    """CPU ms of a fixed pure-Python workload (dicts, strings, json): best of 3.

    Machines of the same kind differ: this one's runs of the same code and the
    same bench differed by 1.8x on two days. Printed beside each figure so that
    runs are compared only at similar speeds (lower is faster).
    """
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        _reference_work()
        best = min(best, time.process_time() - started)
    return best * 1000


def speed_line(ms: float) -> str:
    """How fast the machine was, for a bench's report (`ms` from reference_ms)."""
    return (f"machine: {os.cpu_count()} cores; a reference Python workload took {ms:.0f} ms of CPU"
            " (bench.procstat.reference_ms; lower is faster: compare runs at similar speeds only)")


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent not idle since boot (the `cpu` line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields)) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds each named session and this process (all its threads) spent between start() and stop().

    Also what the whole machine spent, so that other work on it (another
    engineer's tests, say) shows up beside the numbers it distorts.
    """

    SELF = "load generator"

    def __init__(self, sessions: Mapping[str, int]) -> None:
        self.sessions = dict(sessions)
        self._before: dict[str, float] = {}
        self.used_s: dict[str, float] = {}
        self.machine_s = 0.0
        self.wall_s = 0.0
        self._started = 0.0
        self._machine_before = 0.0

    def _sample(self) -> dict[str, float]:
        sample = session_cpu_s(self.sessions)
        sample[self.SELF] = time.process_time()
        return sample

    def start(self) -> None:
        self._before = self._sample()
        self._machine_before = machine_busy_s()
        self._started = time.perf_counter()

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self._started
        self.machine_s = machine_busy_s() - self._machine_before
        after = self._sample()
        self.used_s = {name: after[name] - self._before[name] for name in after}

    @property
    def others_s(self) -> float:
        """CPU seconds of processes this meter does not name (never below 0: the clocks tick coarsely)."""
        return max(0.0, self.machine_s - sum(self.used_s.values()))


def server_sockets(port: int) -> set[str]:
    """Inodes of TCP sockets whose local port is `port`, LISTEN excepted (the server's side of connections)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] != "0A":
                inodes.add(fields[9])
    return inodes


def connections_per_process(session: int, port: int) -> dict[int, int]:
    """Connections to `port` held by each process of `session` that holds any (pid -> count).

    Shows how a server's workers share its clients (gunicorn: which worker took which connection).
    """
    inodes = server_sockets(port)
    held: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
            if int(raw[raw.rindex(")") + 2:].split()[_SESSION]) != session:
                continue
            links = [os.readlink(fd.path) for fd in os.scandir(Path(entry.path, "fd"))]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        count = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        if count:
            held[int(entry.name)] = count
    return held
