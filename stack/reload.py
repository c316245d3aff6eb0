"""Restart a command when a Python file under the working directory changes (development only).

    python -m stack.reload -- celery -A tasks.app worker -Q orders ...

docker-compose.yml runs the workers, beat and the outbox relay under this, so an
edit on the host (the source is bind-mounted) restarts them the way gunicorn
--reload restarts the API. It polls mtimes once a second: no extra dependency,
and it works on bind mounts where inotify events do not cross.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SKIP = {".venv", ".venv-exporter", "var", "__pycache__", ".git", "node_modules"}


def snapshot(root: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                try:
                    found[path] = os.stat(path).st_mtime
                except FileNotFoundError:
                    continue
    return found


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path.cwd()
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        before = snapshot(root)
        child = subprocess.Popen(argv)
        while child.poll() is None and not stopping and snapshot(root) == before:
            time.sleep(1)
        if child.poll() is None:
            # SIGTERM is a warm shutdown for Celery: running tasks finish first.
            child.terminate()
            child.wait()
        if stopping:
            return child.returncode or 0
        if snapshot(root) == before:
            # It exited by itself (a crash, an import error): wait for the fix rather than spin.
            print(f"stack.reload: exited ({child.returncode}); waiting for a change", flush=True)
            while not stopping and snapshot(root) == before:
                time.sleep(1)
            if stopping:
                return child.returncode
        print("stack.reload: source changed, restarting", flush=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
