"""Private Redis and MongoDB-compatible servers, and waiting for things to answer.

Shared by `make run`, the test fixtures and the benchmark, so all three start
the servers the same way: on their own ports and data directories, never
touching the machine's own services.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# Ports handed out by this process, never twice.
_GIVEN: set[int] = set()
# How far below the kernel's ephemeral range the ports are picked.
PORT_SPAN = 12_000


def ephemeral_low() -> int:
    """The first port the kernel gives outgoing connections (Linux: ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range.

    A stack's ports are chosen up front and bound later (the test suite picks the mailbox's,
    the sandbox's and the gateways' at import, and starts them minutes later). A port from the
    ephemeral range (what binding to port 0 gives) can meanwhile become the local port of any
    outgoing connection, and the server then fails with "Address already in use" (seen in CI:
    the mailbox). Below the range only another listener can take it.
    """
    low = ephemeral_low()
    picker = random.SystemRandom()
    for _ in range(500):
        port = picker.randrange(max(1024, low - PORT_SPAN), low)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:  # that span is full: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")
        time.sleep(0.05)


def wait_http(url: str, timeout: float = 30.0, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == expect:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}: {exc.read()[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not {expect} after {timeout:.0f}s ({last})")


def redis_command(port: int, data_dir: Path) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not found; install it (Debian: apt-get install redis-server)")
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        # As in production: durable, and refuse writes rather than evict queued tasks.
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--maxmemory-policy", "noeviction", "--daemonize", "no", "--logfile", "",
    ]


def mongo_command(port: int, data_dir: Path) -> list[str]:
    binary = Path(sys.executable).with_name("nx-27017")
    if not binary.exists():
        found = shutil.which("nx-27017")
        if found is None:
            raise FileNotFoundError("nx-27017 not found; run `make install`")
        binary = Path(found)
    # Its default log and pid files are shared /tmp paths: give each server its own.
    return [
        str(binary), "--data-dir", str(data_dir / "db"), "--port", str(port),
        "--log-file", str(data_dir / "nx-27017.log"), "--pid-file", str(data_dir / "nx-27017.pid"),
    ]


# FerretDB (issue 22), built by `make ferretdb` from its Go module into the ignored .cache/.
FERRETDB = Path(__file__).resolve().parent.parent / ".cache" / "go" / "bin" / "ferretdb"


def ferretdb_command(port: int, data_dir: Path) -> list[str]:
    """FerretDB on SQLite in `data_dir`, on `port` alone (its debug listener, 8088 by default, off).

    KIRANA_FERRETDB names another build (`make ferretdb-stock`: without Kirana's patch).
    """
    binary = Path(os.environ.get("KIRANA_FERRETDB") or FERRETDB)
    if not binary.exists():
        raise FileNotFoundError(f"{binary} not found; run `make ferretdb` (needs Go)")
    (data_dir / "sqlite").mkdir(parents=True, exist_ok=True)
    return [
        str(binary), "--handler=sqlite", f"--sqlite-url=file:{data_dir / 'sqlite'}/",
        f"--state-dir={data_dir}", f"--listen-addr=127.0.0.1:{port}", "--debug-addr=-",
        "--telemetry=disable", "--log-level=warn",
    ]


def _testing_on_ferretdb() -> bool:
    return os.environ.get("KIRANA_TEST_MONGO") == "ferretdb"


def test_mongo_name() -> str:
    """The name of the server test_mongo_command starts, for what the benches print."""
    return "FerretDB" if _testing_on_ferretdb() else "nx-27017"


def test_mongo_command(port: int, data_dir: Path) -> list[str]:
    """The MongoDB the tests, the chaos suite and the benches start: nx-27017, or FerretDB when
    KIRANA_TEST_MONGO=ferretdb (`make test-ferretdb`)."""
    return ferretdb_command(port, data_dir) if _testing_on_ferretdb() else mongo_command(port, data_dir)


class Server:
    """A child process (serving on `port`, if given); a context manager that stops it."""

    def __init__(self, name: str, argv: Sequence[str], port: int | None, *, env: dict[str, str] | None = None,
                 log: Path | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = env
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
        )
        if self.port is None:
            return self
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} did not listen on {self.port} within {timeout:.0f}s")
            time.sleep(0.05)
        return self

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_env(redis_url: str, mongo_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"REDIS_URL": redis_url, "MONGO_URL": mongo_url, "PYTHONUNBUFFERED": "1", **extra})
    return env
