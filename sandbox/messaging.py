"""A local SMS and push sandbox: MSG91's `POST /api/v5/sms` and FCM's legacy `POST /fcm/send`.

`python -m sandbox.messaging --port 9200` serves both on werkzeug's threaded server and keeps
what it receives in memory, for `make run` and the tests. SIGTERM or SIGINT stops it.

API (as the providers in kirana/providers.py call it):
    POST /api/v5/sms   header `authkey: <SMS_API_KEY>`, JSON {sender, to, message, reference}
                       → 200 {"type": "success", "message": "<request id>"}; 401 on a wrong key;
                       400 {"type": "error", ...} on a malformed body
    POST /fcm/send     header `Authorization: key=<PUSH_SERVER_KEY>`, JSON {to, notification, data}
                       → 200 {"multicast_id", "success", "failure", "canonical_ids", "results": [...]};
                       a token starting "bad-" answers NotRegistered, "invalid-" InvalidRegistration,
                       "unavailable-" Unavailable (each recorded, with its error)
Control (no auth):
    POST /_sandbox/control {"fail_next": N, "fail_status": 500|503|400|..., "delay_s": X}
        the next N requests to either endpoint answer fail_status (not recorded); every request
        waits delay_s *after* recording it (a client that times out has still sent it)
    GET  /_sandbox/control               the knobs
    GET  /_sandbox/messages?to=&channel=sms|push   the recorded messages, oldest first (a list)
    GET  /_sandbox/stats                 request counters
    POST /_sandbox/reset                 forget messages and counters, knobs back to default
    GET  /_sandbox/healthz
"""

from __future__ import annotations

import argparse
import hmac
import logging
import secrets
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.config import settings_from
from sandbox.serve import serve

log = logging.getLogger("sandbox.messaging")

EXTENSION = "messaging_sandbox"
DEFAULT_SMS_API_KEY = "kirana-sandbox-sms-key"
DEFAULT_PUSH_SERVER_KEY = "kirana-sandbox-push-key"
FAIL_STATUSES = (400, 401, 403, 404, 408, 429, 500, 502, 503, 504)
MAX_DELAY_S = 60.0
TOKEN_ERRORS = {"bad-": "NotRegistered", "invalid-": "InvalidRegistration", "unavailable-": "Unavailable"}


class SandboxError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessagingConfig:
    sms_api_key: str = DEFAULT_SMS_API_KEY
    push_server_key: str = DEFAULT_PUSH_SERVER_KEY
    host: str = "127.0.0.1"
    port: int = 9200
    max_messages: int = 10_000  # the oldest are forgotten beyond this

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> MessagingConfig:
        """Environment (SMS_API_KEY, PUSH_SERVER_KEY, MESSAGING_HOST, MESSAGING_PORT), then flags."""
        spec = (("sms_api_key", "SMS_API_KEY", str), ("push_server_key", "PUSH_SERVER_KEY", str),
                ("host", "MESSAGING_HOST", str), ("port", "MESSAGING_PORT", int))
        cfg = cls(**settings_from(spec, env, overrides))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.sms_api_key or not self.push_server_key:
            raise ValueError("the SMS api key and the push server key must not be empty")
        if self.max_messages < 1:
            raise ValueError("max_messages must be at least 1")


@dataclass(frozen=True)
class Knobs:
    fail_next: int = 0
    fail_status: int = 503
    delay_s: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {"fail_next": self.fail_next, "fail_status": self.fail_status, "delay_s": self.delay_s}


def parse_control(data: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in data.items():
        if name == "fail_next":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SandboxError(400, "fail_next must be a non-negative integer")
            changes[name] = value
        elif name == "fail_status":
            if isinstance(value, bool) or value not in FAIL_STATUSES:
                raise SandboxError(400, f"fail_status must be one of {FAIL_STATUSES}")
            changes[name] = int(value)
        elif name == "delay_s":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DELAY_S:
                raise SandboxError(400, f"delay_s must be a number from 0 to {MAX_DELAY_S}")
            changes[name] = float(value)
        else:
            raise SandboxError(400, f"unknown control knob: {name}")
    return changes


# -- the store -------------------------------------------------------------------------------


class Outbox:
    """Everything received, the knobs and the counters, behind one lock."""

    def __init__(self, config: MessagingConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._messages: deque[dict[str, Any]] = deque(maxlen=config.max_messages)
        self._knobs = Knobs()
        self._counts: Counter[str] = Counter()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def admit(self, channel: str) -> tuple[int | None, float]:
        """(status to fail this request with, or None; seconds to wait after answering it)."""
        with self._lock:
            self._counts[f"{channel}_requests"] += 1
            knobs = self._knobs
            if knobs.fail_next > 0:
                self._knobs = replace(knobs, fail_next=knobs.fail_next - 1)
                self._counts["failed"] += 1
                return knobs.fail_status, knobs.delay_s
            return None, knobs.delay_s

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._messages.append(entry)
            self._counts[f"{entry['channel']}_recorded"] += 1
        return entry

    def messages(self, to: str | None = None, channel: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages
                    if (to is None or m["to"] == to) and (channel is None or m["channel"] == channel)]

    def knobs(self) -> Knobs:
        with self._lock:
            return self._knobs

    def control(self, changes: dict[str, Any]) -> Knobs:
        with self._lock:
            self._knobs = replace(self._knobs, **changes)
            return self._knobs

    def stats(self) -> dict[str, int]:
        with self._lock:
            base = {"sms_requests": 0, "push_requests": 0, "sms_recorded": 0, "push_recorded": 0, "failed": 0,
                    "unauthorized": 0, "invalid": 0}
            return {**base, **self._counts}

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._knobs = Knobs()
            self._counts.clear()


# -- the app ---------------------------------------------------------------------------------

api = Blueprint("messaging", __name__)
control = Blueprint("messaging_control", __name__, url_prefix="/_sandbox")


def outbox() -> Outbox:
    found: Outbox = current_app.extensions[EXTENSION]
    return found


def create_app(config: MessagingConfig | None = None) -> Flask:
    config = config or MessagingConfig()
    config.validate()
    app = Flask("sandbox.messaging", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.extensions[EXTENSION] = Outbox(config)
    app.register_blueprint(api)
    app.register_blueprint(control)
    app.register_error_handler(SandboxError, _sandbox_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def _sandbox_error(exc: SandboxError) -> tuple[Response, int]:
    return jsonify({"type": "error", "message": exc.message}), exc.status


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    return _sandbox_error(SandboxError(exc.code or 500, exc.description or exc.name))


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _sandbox_error(SandboxError(500, "internal error"))


def _json_object() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        outbox().count("invalid")
        raise SandboxError(400, "the body must be a JSON object")
    return data


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        outbox().count("invalid")
        raise SandboxError(400, f"{name} must be a non-empty string")
    return value


def _fail(channel: str, status: int) -> tuple[Response, int]:
    if channel == "push" and status >= 500:
        return jsonify({"error": "Unavailable"}), status
    return jsonify({"type": "error", "message": f"sandbox: injected failure {status}"}), status


def _after(delay_s: float) -> None:
    if delay_s:
        time.sleep(delay_s)


@api.post("/api/v5/sms")
def send_sms() -> Any:
    box = outbox()
    if not hmac.compare_digest(request.headers.get("authkey", "").encode(), box.config.sms_api_key.encode()):
        box.count("unauthorized")
        return jsonify({"type": "error", "message": "Authentication failure", "code": "401"}), 401
    failure, delay = box.admit("sms")
    if failure is not None:
        _after(delay)
        return _fail("sms", failure)
    data = _json_object()
    to = _text(data, "to")
    assert to is not None
    digits = to[1:] if to.startswith("+") else to
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        box.count("invalid")
        raise SandboxError(400, "to must be a phone number with its country code")
    message = _text(data, "message")
    request_id = secrets.token_hex(12)
    box.record({"channel": "sms", "id": request_id, "to": to, "message": message, "sender": _text(data, "sender"),
                "reference": _text(data, "reference", required=False), "received_at": time.time()})
    log.info("sms %s to %s: %s", request_id, to, message)
    _after(delay)
    return {"type": "success", "message": request_id}


@api.post("/fcm/send")
def send_push() -> Any:
    box = outbox()
    expected = f"key={box.config.push_server_key}".encode()
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
        box.count("unauthorized")
        return Response("<HTML><TITLE>Unauthorized</TITLE><BODY>Error 401</BODY></HTML>", status=401,
                        content_type="text/html; charset=UTF-8")
    failure, delay = box.admit("push")
    if failure is not None:
        _after(delay)
        return _fail("push", failure)
    data = _json_object()
    token = _text(data, "to")
    assert token is not None
    notification = data.get("notification") or {}
    payload = data.get("data") or {}
    if not isinstance(notification, dict) or not isinstance(payload, dict):
        box.count("invalid")
        raise SandboxError(400, "notification and data must be JSON objects")
    error = next((e for prefix, e in TOKEN_ERRORS.items() if token.startswith(prefix)), None)
    message_id = None if error else f"0:{int(time.time() * 1000)}%{secrets.token_hex(8)}"
    box.record({"channel": "push", "id": message_id, "to": token, "title": notification.get("title"),
                "body": notification.get("body"), "data": payload, "error": error, "received_at": time.time()})
    log.info("push %s to %s: %s", message_id or error, token, notification.get("body"))
    _after(delay)
    result = {"error": error} if error else {"message_id": message_id}
    return {"multicast_id": secrets.randbits(62), "success": 0 if error else 1, "failure": 1 if error else 0,
            "canonical_ids": 0, "results": [result]}


@control.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@control.get("/control")
def knobs() -> Any:
    return outbox().knobs().describe()


@control.post("/control")
def set_knobs() -> Any:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise SandboxError(400, "the body must be a JSON object")
    return outbox().control(parse_control(data)).describe()


@control.get("/messages")
def messages() -> Any:
    channel = request.args.get("channel") or None
    if channel not in (None, "sms", "push"):
        raise SandboxError(400, "channel must be sms or push")
    return jsonify(outbox().messages(to=request.args.get("to") or None, channel=channel))


@control.get("/stats")
def stats() -> Any:
    return outbox().stats()


@control.post("/reset")
def reset() -> Any:
    outbox().reset()
    return {"status": "reset"}


# -- the command -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sandbox.messaging", description="A local SMS (MSG91) and push (FCM) "
                                "sandbox.")
    p.add_argument("--host", help="listen address (MESSAGING_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (MESSAGING_PORT, default 9200)")
    p.add_argument("--sms-api-key", dest="sms_api_key",
                   help="the authkey to expect (SMS_API_KEY; prefer the environment: flags show in ps)")
    p.add_argument("--push-server-key", dest="push_server_key",
                   help="the FCM server key to expect (PUSH_SERVER_KEY; prefer the environment)")
    p.add_argument("--max-messages", dest="max_messages", type=int, help="messages kept (default 10000)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(parse_args(argv))
    logging.basicConfig(level=args.pop("log_level").upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = MessagingConfig.from_env(**args)
    except ValueError as exc:
        print(f"sandbox.messaging: {exc}", file=sys.stderr)
        return 2
    serve(create_app(config), config.host, config.port, name="SMS and push sandbox")
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
