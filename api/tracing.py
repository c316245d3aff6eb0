"""A request id on every request: taken from X-Request-ID or made, returned, logged, sent on with tasks.

The id is bound into the logging context for the request, so every log line
the request writes carries it, and tasks/app.py copies it into the headers
of every task the request enqueues. One line per request is logged here
(gunicorn's own access log is off for the API), with the route rule, not
the raw path, so ids in paths do not make every line unique.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from kirana import logs

HEADER = "X-Request-ID"
# What a caller may choose as its id; anything else is replaced, so a header
# cannot inject text into the logs.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = logging.getLogger("kirana.api")


def register(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_teardown)


def request_id() -> str | None:
    return logs.current("request_id")


def _start() -> None:
    given = request.headers.get(HEADER, "")
    rid = given if _ACCEPTABLE.match(given) else uuid.uuid4().hex
    logs.clear()
    logs.bind_ids(request_id=rid)
    g.request_started = time.perf_counter()


def elapsed_s() -> float | None:
    """Seconds since this request began (the one clock the request line and the metrics share)."""
    started = g.get("request_started")
    return time.perf_counter() - started if started is not None else None


def _finish(response: Response) -> Response:
    rid = request_id()
    if rid:
        response.headers[HEADER] = rid
    elapsed = elapsed_s()
    elapsed_ms = round(elapsed * 1000, 2) if elapsed is not None else None
    log.info("request", extra={
        "method": request.method,
        "route": request.url_rule.rule if request.url_rule else None,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": elapsed_ms,
        "remote_addr": request.remote_addr,
    })
    return response


def _teardown(_: BaseException | None) -> None:
    logs.clear()
