"""The JSON log lines: ids from the context, secrets and card/UPI data kept out."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from kirana import logs


@pytest.fixture(autouse=True)
def _restore_root_logger():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _line(configure_stream: io.StringIO) -> dict:
    return json.loads(configure_stream.getvalue().strip().splitlines()[-1])


def test_a_line_carries_the_bound_ids_and_drops_them_after_the_block() -> None:
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    log = logging.getLogger("kirana.test")
    with logs.bound(request_id="r-1", order_id="ord_1"):
        log.info("order %s accepted", "ord_1")
    line = _line(out)
    assert line["event"] == "order ord_1 accepted"
    assert line["request_id"] == "r-1" and line["order_id"] == "ord_1"
    assert line["level"] == "info" and line["logger"] == "kirana.test" and line["ts"].endswith("Z")
    log.info("after")
    assert "request_id" not in _line(out)


def test_secret_fields_card_numbers_and_upi_ids_are_masked() -> None:
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    log = logging.getLogger("kirana.test")
    log.info("paid with 4111 1111 1111 1111 and asha@okicici at 1795855944154",
             extra={"password": "hunter2", "access_token": "abc", "amount_paise": 1000})
    line = _line(out)
    assert "4111 1111" not in line["event"] and "****1111" in line["event"]
    assert "asha@okicici" not in line["event"]
    assert "1795855944154" in line["event"], "an epoch-ms timestamp is not a card number"
    assert line["password"] == "[redacted]" and line["access_token"] == "[redacted]"
    assert line["amount_paise"] == 1000


def test_card_numbers_pass_the_luhn_check_and_ids_do_not_count() -> None:
    assert logs.card_numbers("card 4111-1111-1111-1111 ok") == ["4111111111111111"]
    assert logs.card_numbers("took 0.03311385000000655s; id 00aca116f5b74e1fa199547592940530") == []
    assert logs.card_numbers("4111111111111112") == []
    # A task id (a UUID) whose digit groups happen to pass the Luhn check is not a card number.
    assert logs.card_numbers("Task x[10087231-3156-4558-8c2a-332dd7953c36] received") == []


@contextlib.contextmanager
def _buffered(name: str, out: io.StringIO, flush_s: float) -> Iterator[tuple[logging.Logger, logs.BufferedLineHandler]]:
    """A logger of its own writing bare messages through a BufferedLineHandler into `out`."""
    handler = logs.BufferedLineHandler(out, flush_s=flush_s)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        yield log, handler
    finally:
        log.removeHandler(handler)


def test_buffered_lines_come_out_in_order_soon_and_warnings_at_once() -> None:
    out = io.StringIO()
    with _buffered("kirana.test.buffered", out, flush_s=0.05) as (log, _):
        for i in range(5):
            log.info("line %d", i)
        assert out.getvalue() == "", "written per line: not buffered"
        log.warning("trouble")
        assert out.getvalue().splitlines() == [*(f"line {i}" for i in range(5)), "trouble"]
        log.info("later")
        deadline = time.monotonic() + 2
        while "later" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out.getvalue().splitlines()[-1] == "later", "a buffered line never came out"


def test_a_forked_child_does_not_write_its_parents_buffered_lines_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "log"
    with open(path, "a") as stream:
        handler = logs.BufferedLineHandler(stream, flush_s=60)
        handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
        record = logging.LogRecord("kirana.test", logging.INFO, __file__, 1, "before fork", None, None)
        handler.emit(record)
        pid = os.fork()
        if pid == 0:  # the child: one line of its own, then out without running the parent's atexit
            handler.emit(logging.LogRecord("kirana.test", logging.INFO, __file__, 1, "child", None, None))
            handler.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        handler.flush()
    messages = [line.split(" ", 1)[1] for line in path.read_text().splitlines()]
    assert sorted(messages) == ["before fork", "child"], messages


def test_lines_from_many_threads_come_out_once_each_and_in_each_threads_order() -> None:
    # The buffer takes lines without a lock (deque.append) while the flusher drains it.
    out = io.StringIO()
    with _buffered("kirana.test.threads", out, flush_s=0.001) as (log, handler):
        threads = [threading.Thread(target=lambda t=t: [log.info("%d %d", t, i) for i in range(2000)])
                   for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        handler.flush()
    seen: dict[int, list[int]] = {t: [] for t in range(8)}
    for line in out.getvalue().splitlines():
        t, i = map(int, line.split())
        seen[t].append(i)
    assert all(numbers == list(range(2000)) for numbers in seen.values())


def test_the_line_matches_the_structlog_chain_it_replaced() -> None:
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    log = logging.getLogger("kirana.test")
    with logs.bound(request_id="r-9", event="bound ids never replace the message"):
        try:
            raise ValueError("no")
        except ValueError:
            log.exception("failed %s", "here", extra={"order_id": "ord_2", "when": object()})
    line = _line(out)
    assert list(line)[:5] == ["event", "request_id", "level", "logger", "ts"]
    assert line["event"] == "failed here" and line["request_id"] == "r-9"
    assert line["level"] == "error" and line["logger"] == "kirana.test"
    assert line["order_id"] == "ord_2" and line["when"].startswith("<object object")
    assert line["exception"].startswith("Traceback") and line["exception"].endswith("ValueError: no")
    assert time.time() - datetime.fromisoformat(line["ts"]).timestamp() < 60
