"""The API's gunicorn worker class shares a burst of keep-alive connections evenly among its workers.

Real gunicorn, real sockets: 16 connections opened at once, then one request
on each, answered with the serving worker's pid. Plain gthread gave splits
such as 1/15 here (whichever worker is awake takes the burst).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procstat import server_sockets
from stack import balanced_worker, servers
from tests.harness import eventually

CONNECTIONS = 16


def _ask_pid(sock: socket.socket) -> int:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1])


def _burst(port: int, n: int = CONNECTIONS) -> Counter[int]:
    """Open `n` connections at once, then ask each which worker holds it; closes them after.

    First waits until the workers have let go of earlier connections: they count
    in the balance for as long as they are held.
    """
    eventually(lambda: not server_sockets(port), what="the workers letting go of earlier connections")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        return Counter(_ask_pid(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def _one_request(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return _ask_pid(sock)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[servers.Server]:
    port = servers.free_port()
    argv = [str(Path(sys.executable).with_name("gunicorn")), "tests.integration.pid_app:app",
            "--bind", f"127.0.0.1:{port}", "--worker-class", "stack.balanced_worker.BalancedThreadWorker",
            "--workers", "2", "--threads", "4", "--keep-alive", "30", "--no-control-socket"]
    server = servers.Server("gunicorn", argv, port, env={**os.environ, "PYTHONPATH": os.getcwd()},
                            log=tmp_path / "gunicorn.log", cwd=Path.cwd()).start()
    try:
        yield server
    finally:
        server.stop()


def _workers_answering(port: int, *, besides: int | None = None) -> set[int]:
    """The pids of two workers other than `besides`, from one-off requests (fails after 30 s)."""
    seen: set[int] = set()

    def probe() -> bool:
        seen.add(_one_request(port))
        seen.discard(besides)  # type: ignore[arg-type]
        return len(seen) >= 2

    eventually(probe, timeout=30, what="two workers answering")
    return seen


def _even(split: Counter[int]) -> bool:
    return len(split) == 2 and max(split.values()) - min(split.values()) <= 2


def test_a_burst_of_connections_is_shared_evenly_and_a_stopped_or_killed_worker_is_not_waited_for(
        gunicorn: servers.Server) -> None:
    port = gunicorn.port
    assert port is not None
    _workers_answering(port)
    for _ in range(3):
        split = _burst(port)
        assert _even(split), f"connections per worker: {dict(split)}"
    stopped, survivor = list(split)

    # A worker that stops turning its loop (SIGSTOP here; wedged, in life) is left out after
    # STALE_S: the other takes the whole burst instead of waiting for it.
    eventually(lambda: not server_sockets(port), what="the workers letting go of the last burst")
    os.kill(stopped, signal.SIGSTOP)
    try:
        time.sleep(balanced_worker.STALE_S + 0.5)
        assert _burst(port) == {survivor: CONNECTIONS}
    finally:
        os.kill(stopped, signal.SIGCONT)

    # A worker killed outright: the master starts another, and the two share again.
    os.kill(stopped, signal.SIGKILL)
    _workers_answering(port, besides=stopped)
    split = _burst(port)
    assert _even(split) and stopped not in split, f"connections per worker after the kill: {dict(split)}"
