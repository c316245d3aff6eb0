"""A local SMTP mailbox on aiosmtpd, with the received mail served as JSON over HTTP.

`python -m sandbox.mailbox --port 2525 --http-port 8025` accepts any mail for anyone and keeps
it in memory, parsed: envelope sender and recipients, From, To, the decoded Subject, the text
body decoded from its charset, the Message-ID. SIGTERM or SIGINT stops it.

HTTP (no auth):
    GET  /messages?to=<addr>     received mail, oldest first (a JSON list); `to` matches an
                                 envelope recipient, case-insensitively
    GET  /messages/<id>/raw      one message as received (message/rfc822)
    POST /reset                  forget the mail, clear the knobs
    POST /control {"fail_next": N, "code": 421|450|451|452|550|551|552|553|554, "at": "rcpt"|"data"}
                                 answer the next N RCPT (default) or end-of-DATA with that code;
                                 4xx is transient for a client, 5xx permanent
    GET  /control, GET /healthz

In-process, for tests:
    with Mailbox() as box:            # SMTP on a free port (box.port); no HTTP unless http_port=
        ... smtplib.SMTP("127.0.0.1", box.port) ...
        box.wait_for("asha@example.in")   # the parsed messages, like GET /messages
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from types import FrameType
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger("sandbox.mailbox")

FAIL_CODES: dict[int, str] = {
    421: "4.3.2 Mailbox sandbox: service not available, try again later",
    450: "4.2.1 Mailbox sandbox: mailbox unavailable, try again later",
    451: "4.3.0 Mailbox sandbox: local error, try again later",
    452: "4.3.1 Mailbox sandbox: insufficient storage, try again later",
    550: "5.1.1 Mailbox sandbox: mailbox unavailable",
    551: "5.1.6 Mailbox sandbox: user not local",
    552: "5.3.4 Mailbox sandbox: message too big",
    553: "5.1.3 Mailbox sandbox: mailbox name not allowed",
    554: "5.7.1 Mailbox sandbox: transaction failed",
}
STAGES = ("rcpt", "data")
SERVER_HOSTNAME = "mailbox.kirana.local"  # said in the greeting; avoids a DNS lookup of our own name


class ControlError(ValueError):
    pass


@dataclass(frozen=True)
class Failure:
    remaining: int = 0
    code: int = 421
    at: str = "rcpt"

    def describe(self) -> dict[str, Any]:
        return {"fail_next": self.remaining, "code": self.code, "at": self.at}


def parse(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> dict[str, Any]:
    """What a test wants to see of a message: headers and text decoded to str."""
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex, "received_at": time.time(), "mail_from": mail_from, "rcpt_tos": list(rcpt_tos),
        "from": None, "to": [], "subject": None, "message_id": None, "date": None, "content_language": None,
        "text": None, "html": None, "size": len(raw), "parse_error": None,
    }
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        entry["from"] = str(msg["From"]) if msg["From"] is not None else None
        entry["to"] = [str(a) for a in msg.get_all("To", [])]
        entry["subject"] = str(msg["Subject"]) if msg["Subject"] is not None else None
        entry["message_id"] = str(msg["Message-ID"]).strip() if msg["Message-ID"] is not None else None
        entry["date"] = str(msg["Date"]) if msg["Date"] is not None else None
        entry["content_language"] = str(msg["Content-Language"]) if msg["Content-Language"] is not None else None
        # Line ends as a mail client shows them: "\n", whatever the transfer encoding.
        text = msg.get_body(preferencelist=("plain",))
        if text is not None:
            entry["text"] = text.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
        html = msg.get_body(preferencelist=("html",))
        if html is not None:
            entry["html"] = html.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
    except Exception as exc:  # a broken message is kept, with the reason
        entry["parse_error"] = f"{type(exc).__name__}: {exc}"
    return entry


class _Handler:
    """aiosmtpd's handler: runs on the mailbox's event loop thread."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        refused = self.box._take_failure("rcpt")
        if refused:
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refused = self.box._take_failure("data")
        if refused:
            return refused
        raw = envelope.original_content or b""
        entry = self.box._store(raw, str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos],
                                peer=f"{session.peer[0]}:{session.peer[1]}" if session.peer else "")
        log.info("mail %s from %s to %s: %s", entry["id"], entry["mail_from"], ", ".join(entry["rcpt_tos"]),
                 entry["subject"])
        return f"250 OK queued as {entry['id']}"


class Mailbox:
    """The SMTP server (an asyncio loop on its own thread) and, if asked, its HTTP view."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, http_port: int | None = None,
                 max_messages: int = 10_000, data_size_limit: int = 10 << 20) -> None:
        self.host = host
        self._port = port
        self._http_port = http_port
        self.data_size_limit = data_size_limit
        self._lock = threading.Condition()
        self._messages: deque[dict[str, Any]] = deque(maxlen=max_messages)
        self._raw: dict[str, bytes] = {}
        self._failure = Failure()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._http: BaseWSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The SMTP port (the real one once started, also when asked for port 0)."""
        return self._port

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http is not None else self._http_port

    def start(self) -> Mailbox:
        if self._thread is not None:
            raise RuntimeError("the mailbox is already running")
        loop = asyncio.new_event_loop()
        handler = _Handler(self)

        def factory() -> SMTP:
            return SMTP(handler, hostname=SERVER_HOSTNAME, ident="Kirana mailbox sandbox", enable_SMTPUTF8=True,
                        decode_data=False, data_size_limit=self.data_size_limit, loop=loop)

        try:
            self._server = loop.run_until_complete(loop.create_server(factory, self.host, self._port))
        except BaseException:
            loop.close()
            raise
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, name="mailbox-smtp", daemon=True)
        self._thread.start()
        if self._http_port is not None:
            try:
                self._http = make_server(self.host, self._http_port, create_app(self), threaded=True)
            except BaseException:
                self.stop()
                raise
            self._http_thread = threading.Thread(target=self._http.serve_forever, name="mailbox-http", daemon=True)
            self._http_thread.start()
        return self

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._shutdown_loop)
        thread.join(10)
        # The loop has stopped: let the cancelled sessions finish (they close their sockets) here.
        pending = asyncio.all_tasks(loop)
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        if server is not None:
            loop.run_until_complete(server.wait_closed())
        loop.close()
        self._loop = self._server = self._thread = None

    def _shutdown_loop(self) -> None:
        assert self._loop is not None
        if self._server is not None:
            self._server.close()
        for task in asyncio.all_tasks(self._loop):  # the open SMTP sessions
            task.cancel()
        self._loop.stop()

    def drop_sessions(self) -> None:
        """Close every open SMTP session, as a relay does to idle clients; keep listening."""
        if self._loop is None:
            return
        done = threading.Event()

        def cancel() -> None:
            for task in asyncio.all_tasks(self._loop):
                if task is not asyncio.current_task():
                    task.cancel()
            done.set()

        self._loop.call_soon_threadsafe(cancel)
        done.wait(10)

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- mail --------------------------------------------------------------------------------

    def _store(self, raw: bytes, mail_from: str, rcpt_tos: list[str], *, peer: str = "") -> dict[str, Any]:
        # `peer`: the client's address and port, which tell its connections apart.
        entry = {**parse(raw, mail_from, rcpt_tos), "peer": peer}
        with self._lock:
            if len(self._messages) == self._messages.maxlen:
                self._raw.pop(self._messages[0]["id"], None)
            self._messages.append(entry)
            self._raw[entry["id"]] = raw
            self._lock.notify_all()
        return entry

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages]

    def find(self, to: str | None = None) -> list[dict[str, Any]]:
        """Messages with `to` among the envelope recipients (any case); all of them without."""
        want = to.lower() if to else None
        with self._lock:
            return [dict(m) for m in self._messages if want is None or want in (r.lower() for r in m["rcpt_tos"])]

    def wait_for(self, to: str | None = None, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The messages for `to`, once there are `count` of them (fewer after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self.find(to)
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._lock.wait(min(left, 0.1))

    def raw(self, message_id: str) -> bytes | None:
        with self._lock:
            return self._raw.get(message_id)

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._raw.clear()
            self._failure = Failure()

    # -- faults ------------------------------------------------------------------------------

    def control(self, fail_next: int, code: int = 421, at: str = "rcpt") -> Failure:
        """Answer the next `fail_next` RCPT (or end-of-DATA) commands with `code`."""
        if isinstance(fail_next, bool) or not isinstance(fail_next, int) or fail_next < 0:
            raise ControlError("fail_next must be a non-negative integer")
        if isinstance(code, bool) or code not in FAIL_CODES:
            raise ControlError(f"code must be one of {sorted(FAIL_CODES)}")
        if at not in STAGES:
            raise ControlError(f"at must be one of {STAGES}")
        with self._lock:
            self._failure = Failure(fail_next, code, at)
            return self._failure

    def failure(self) -> Failure:
        with self._lock:
            return self._failure

    def _take_failure(self, stage: str) -> str | None:
        with self._lock:
            f = self._failure
            if f.remaining <= 0 or f.at != stage:
                return None
            self._failure = Failure(f.remaining - 1, f.code, f.at)
        log.info("answering %s with %d (injected)", stage.upper(), f.code)
        return f"{f.code} {FAIL_CODES[f.code]}"


# -- HTTP ------------------------------------------------------------------------------------


def create_app(box: Mailbox) -> Flask:
    app = Flask("sandbox.mailbox", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Hindi stays readable with curl
    app.config["MAX_CONTENT_LENGTH"] = 1 << 16
    app.extensions["mailbox"] = box

    def problem(message: str, status: int = 400) -> tuple[Response, int]:
        return jsonify({"error": message}), status

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "smtp_port": box.port}

    @app.get("/messages")
    def messages() -> Any:
        return jsonify(box.find(request.args.get("to") or None))

    @app.get("/messages/<message_id>/raw")
    def raw(message_id: str) -> Any:
        found = box.raw(message_id)
        if found is None:
            return problem("no such message", 404)
        return Response(found, content_type="message/rfc822")

    @app.post("/reset")
    def reset() -> Any:
        box.reset()
        return {"status": "reset"}

    @app.get("/control")
    def get_control() -> Any:
        return box.failure().describe()

    @app.post("/control")
    def set_control() -> Any:
        data = request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            return problem("the body must be a JSON object")
        unknown = set(data) - {"fail_next", "code", "at"}
        if unknown:
            return problem(f"unknown control knob(s): {', '.join(sorted(unknown))}")
        try:
            return box.control(data.get("fail_next", 0), data.get("code", 421), data.get("at", "rcpt")).describe()
        except ControlError as exc:
            return problem(str(exc))

    return app


# -- the command -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m sandbox.mailbox", description="A local SMTP mailbox sandbox.")
    p.add_argument("--host", default=env.get("MAILBOX_HOST", "127.0.0.1"), help="listen address (MAILBOX_HOST)")
    p.add_argument("--port", type=int, default=int(env.get("MAILBOX_PORT", "2525")),
                   help="SMTP port (MAILBOX_PORT, default 2525)")
    p.add_argument("--http-port", dest="http_port", type=int, default=int(env.get("MAILBOX_HTTP_PORT", "8025")),
                   help="HTTP port of GET /messages (MAILBOX_HTTP_PORT, default 8025)")
    p.add_argument("--max-messages", dest="max_messages", type=int, default=10_000)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    box = Mailbox(args.host, args.port, http_port=args.http_port, max_messages=args.max_messages)
    try:
        box.start()
    except OSError as exc:
        print(f"sandbox.mailbox: {exc}", file=sys.stderr)
        return 2
    log.info("mailbox: SMTP on %s:%d, messages on http://%s:%d/messages", args.host, box.port, args.host,
             box.http_port)
    while not stop.wait(0.5):
        pass
    log.info("stopping")
    box.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
