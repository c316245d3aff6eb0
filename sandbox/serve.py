"""Serve a sandbox app until SIGTERM or SIGINT, then stop cleanly (shared by every sandbox's main)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from flask import Flask
from werkzeug.serving import make_server

log = logging.getLogger("sandbox")


def serve(app: Flask, host: str, port: int, *, name: str, detail: str = "") -> int:
    """Run `app` on a threaded werkzeug server until SIGTERM or SIGINT."""
    server = make_server(host, port, app, threaded=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True)
    serving.start()
    log.info("%s on http://%s:%d %s", name, host, server.port, detail)
    while not stop.wait(0.5):
        if not serving.is_alive():
            break
    log.info("stopping")
    server.shutdown()
    server.server_close()
    return 0
