"""MongoDB commands counted per process, by command and collection, for `make soak`.

Off unless MONGO_COMMAND_COUNTS is set. Then every process that opens a MongoDB
client (API, each worker child, beat, the relay) keeps a running count and, at
most every FLUSH_S seconds, rewrites `<data dir>/command-counts/<pid>.json` with
it: the soak sums the files to print commands per second by collection across
the whole stack, which no one process's monitoring sees. pymongo calls the
listener on the command's own thread, so it costs a dict increment per command
and a small file write every FLUSH_S; nothing goes over the network.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from pymongo import monitoring

FLUSH_S = 2.0
FOLDER = "command-counts"
# Connection upkeep, not the application's work.
UPKEEP = frozenset({"hello", "isMaster", "ismaster", "ping", "endSessions", "saslStart", "saslContinue"})


class CommandCounts(monitoring.CommandListener):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.flushed_at = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in UPKEEP:
            return
        collection = event.command.get(event.command_name)
        key = f"{event.command_name} {collection if isinstance(collection, str) else '-'}"
        now = time.monotonic()
        with self.lock:
            self.counts[key] += 1
            if now - self.flushed_at < FLUSH_S:
                return
            self.flushed_at = now
            snapshot = dict(self.counts)
        self._write(snapshot)

    def _write(self, snapshot: dict[str, int]) -> None:
        path = self.folder / f"{os.getpid()}.json"
        scratch = path.with_suffix(".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            scratch.write_text(json.dumps({"pid": os.getpid(), "counts": snapshot}))
            scratch.replace(path)  # a reader never sees half a file
        except OSError:
            pass  # a count is a measurement; it never fails the command it counts

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def listeners(enabled: int, data_dir: Path) -> list[monitoring.CommandListener]:
    """What `kirana.db.client` registers: a counter when counting is on, else nothing."""
    return [CommandCounts(data_dir / FOLDER)] if enabled else []


def by_process(data_dir: Path) -> dict[int, Counter[str]]:
    """Each process's counts so far (its last flush), by pid."""
    found: dict[int, Counter[str]] = {}
    for path in (data_dir / FOLDER).glob("*.json"):
        try:
            found[int(path.stem)] = Counter(json.loads(path.read_text())["counts"])
        except (OSError, ValueError, KeyError):
            continue  # a process's file mid-replace on a filesystem without atomic rename
    return found


def read(data_dir: Path) -> Counter[str]:
    """The whole stack's counts so far, summed over its processes."""
    total: Counter[str] = Counter()
    for counts in by_process(data_dir).values():
        total.update(counts)
    return total
