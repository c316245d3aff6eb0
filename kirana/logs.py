"""JSON log lines that say which request, order, payment and task they belong to.

Every process (API, workers, beat, relay) calls `configure()` once; the
standard library's loggers (ours, Celery's, gunicorn's) then all write one
JSON object per line (`JsonLineFormatter`). The ids live in structlog's context variables:
the API binds `request_id` per request, a worker binds the task's id and
name and the `request_id` that travelled with the message, and
`bind_ids()` adds `order_id` / `payment_id` where code knows them. So one
grep for a request id or an order id follows an order through every queue.

    >>> configure("INFO")
    >>> with bound(request_id="r-1"):
    ...     logging.getLogger("kirana").info("order accepted")   # {"request_id": "r-1", ...}
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog

# The message header a request id travels in, from the API into every task it
# enqueues and on into the tasks those enqueue.
REQUEST_ID_HEADER = "kirana_request_id"

# Keys whose values are never written, whatever logs them.
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|cookie|otp|card|cvv|vpa|signature", re.I)
# A card number (15–19 digits, spaces or dashes allowed, passing the Luhn check: epoch
# milliseconds and ids are digit runs too) or a UPI address, inside free text.
_DIGIT_RUN = re.compile(r"(?<![\w.-])(?:\d[ -]?){14,18}\d(?![\w.-])")
_VPA = re.compile(r"\b[\w.\-]{2,}@[a-z]{2,}\b(?!\.)", re.I)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_numbers(text: str) -> list[str]:
    """Digit runs in `text` that could be card numbers."""
    runs = (re.sub(r"\D", "", m.group()) for m in _DIGIT_RUN.finditer(text))
    return [run for run in runs if luhn_valid(run)]


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "****" + digits[-4:] if luhn_valid(digits) else match.group()


def _mask_text(text: str) -> str:
    return _VPA.sub("***@upi", _DIGIT_RUN.sub(_mask_card, text))


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    # Remembered: every line asks this of each of its ~12 keys, and the keys are a small set.
    return key != "event" and _SECRET_KEYS.search(key) is not None


def redact(event: MutableMapping[str, Any]) -> None:
    """Drop secret-looking fields and mask card numbers and UPI ids in the message (in place)."""
    for key in list(event):
        if _secret_key(key):
            event[key] = "[redacted]"
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = _mask_text(message)


# A LogRecord's own attributes: any other attribute of a record came in `extra=`.
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: the message as "event", the ids bound in this context,
    level, logger, an ISO time in UTC, the record's extras; secret fields and card/UPI data masked.

    The same line structlog's ProcessorFormatter made from our chain of processors
    (merge_contextvars, add_log_level, add_logger_name, TimeStamper, ExtraAdder,
    redact, format_exc_info, JSONRenderer), written out: that chain copied every
    record; a logged line cost ~36 µs with it and ~19 µs with this (~11 µs of it
    formatting). The API logs a line per request, so it was ~10% of a webhook's CPU.
    """

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {"event": record.getMessage()}
        for key, value in structlog.contextvars.get_contextvars().items():
            event.setdefault(key, value)
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event["ts"] = _iso_utc(record.created)
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS:
                event[key] = value
        redact(event)
        if record.exc_info:
            event["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.stack_info:
            event["stack_info"] = record.stack_info
        return json.dumps(event, default=repr)


def _iso_utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")


class BufferedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines written in batches: at most `flush_s` late, at once from WARNING up.

    Why: the API logs a line per request, and a write (and its flush) per line
    from many threads costs far more than the line itself: each write gives up
    the GIL, and the writer waits to get it back behind the other request
    threads. Measured on webhook ingest: ~0.3 ms of CPU per request. Lines
    still held when the process is killed with SIGKILL are lost (at most
    `flush_s` of them); a normal exit flushes them (logging.shutdown).
    """

    def __init__(self, stream: Any = None, *, flush_s: float = 0.1) -> None:
        super().__init__(stream)
        self._flush_s = flush_s
        # deque.append and popleft are atomic: request threads add lines without a lock.
        self._lines: collections.deque[str] = collections.deque()
        self._pid: int | None = None
        os.register_at_fork(before=self.flush, after_in_child=self._forget)

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Unlike Handler.handle, without the handler's lock: 8 request threads taking it
        # for every line queued for it, and each hand-off of the lock cost GIL hand-offs:
        # ~42 µs a line instead of ~12 (measured, 8 threads). Formatting is thread-safe;
        # only flush, which writes, takes the lock.
        passed = self.filter(record)
        if passed:
            self.emit(passed if isinstance(passed, logging.LogRecord) else record)  # 3.12+ may return a record
        return bool(passed)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        if self._pid != os.getpid():
            self._start_flusher()
        if record.levelno >= logging.WARNING:
            self.flush()

    def _start_flusher(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._pid != os.getpid():  # one flusher per process, whoever comes first
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="log-flush", daemon=True).start()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines = []
            with contextlib.suppress(IndexError):
                while True:
                    lines.append(self._lines.popleft())
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # stream closed or gone: nothing left to tell
                    pass

    def _forget(self) -> None:
        self._lines.clear()  # the parent flushed these before forking
        self._pid = None

    def _run(self) -> None:
        while True:
            time.sleep(self._flush_s)
            self.flush()


def configure(level: str | int = "INFO", *, stream: Any = None, buffered: bool = False) -> None:
    """Route every standard-library logger through one JSON renderer on stderr.

    `buffered`: write lines in batches (BufferedLineHandler), for the API.
    """
    formatter = JsonLineFormatter()
    handler = BufferedLineHandler(stream or sys.stderr) if buffered else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    # gunicorn's loggers keep handlers of their own; send them through ours.
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def bind_ids(**ids: Any) -> None:
    """Add ids (order_id, payment_id, ...) to every line logged from here on in this context."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def current(name: str) -> Any:
    return structlog.contextvars.get_contextvars().get(name)


def clear() -> None:
    structlog.contextvars.clear_contextvars()


@contextlib.contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Ids bound for the block only (a task run, a request)."""
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield
