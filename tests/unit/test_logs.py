"""The JSON log lines: ids from the context, secrets and card/UPI data kept out."""

from __future__ import annotations

import io
import json
import logging

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
