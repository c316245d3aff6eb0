"""JSON log lines that say which request, order, payment and task they belong to.

Every process (API, workers, beat, relay) calls `configure()` once; the
standard library's loggers (ours, Celery's, gunicorn's) then all write one
JSON object per line through structlog. The ids live in context variables:
the API binds `request_id` per request, a worker binds the task's id and
name and the `request_id` that travelled with the message, and
`bind_ids()` adds `order_id` / `payment_id` where code knows them. So one
grep for a request id or an order id follows an order through every queue.

    >>> configure("INFO")
    >>> with bound(request_id="r-1"):
    ...     logging.getLogger("kirana").info("order accepted")   # {"request_id": "r-1", ...}
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
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


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secret-looking fields and mask card numbers and UPI ids in the message."""
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = _mask_text(message)
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    structlog.stdlib.ExtraAdder(),
    redact,
]


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
        self._lines: list[str] = []
        self._pid: int | None = None
        os.register_at_fork(before=self.flush, after_in_child=self._forget)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="log-flush", daemon=True).start()
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._lines:
                lines, self._lines = self._lines, []
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # stream closed or gone: nothing left to tell
                    pass

    def _forget(self) -> None:
        self._lines = []  # the parent flushed these before forking
        self._pid = None

    def _run(self) -> None:
        while True:
            time.sleep(self._flush_s)
            self.flush()


def configure(level: str | int = "INFO", *, stream: Any = None, buffered: bool = False) -> None:
    """Route every standard-library logger through one JSON renderer on stderr.

    `buffered`: write lines in batches (BufferedLineHandler), for the API.
    """
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
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
