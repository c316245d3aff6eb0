"""Pure parts of the order domain: the state machine, fingerprints, pricing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kirana import liveness
from kirana.config import Settings
from kirana.fulfilment import price_line
from kirana.orders import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    NewOrder,
    OrderItem,
    PaymentMethod,
    Status,
    check_transition,
)


def test_terminal_states_have_no_way_out_and_every_state_is_reachable() -> None:
    assert all(not TRANSITIONS[s] for s in TERMINAL)
    reachable = {Status.ACCEPTED} | {t for targets in TRANSITIONS.values() for t in targets}
    assert reachable == set(Status)


@pytest.mark.parametrize(("current", "target"), [(Status.CONFIRMED, Status.REJECTED),
                                                   (Status.REJECTED, Status.ACCEPTED),
                                                   (Status.PROCESSING, Status.ACCEPTED)])
def test_illegal_moves_are_refused(current: Status, target: Status) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(current, target)


def test_a_fingerprint_tells_bodies_apart_and_is_stable() -> None:
    a = NewOrder("c", "s", (OrderItem("X", 1), OrderItem("Y", 2)), PaymentMethod.COD)
    same = NewOrder("c", "s", (OrderItem("X", 1), OrderItem("Y", 2)), PaymentMethod.COD)
    other = NewOrder("c", "s", (OrderItem("X", 2), OrderItem("Y", 2)), PaymentMethod.COD)
    assert a.fingerprint() == same.fingerprint() != other.fingerprint()


def test_a_line_is_priced_in_integer_paise_from_the_product() -> None:
    line = price_line({"sku": "ATTA", "name": "Atta 5 kg", "price_paise": 27550, "category": "staples"}, 3)
    assert line == {"sku": "ATTA", "name": "Atta 5 kg", "qty": 3, "category": "staples", "unit_price_paise": 27550,
                    "line_total_paise": 82650}


def test_a_worker_name_tells_its_pool() -> None:
    assert liveness.pool_of("payments@kirana-7f9c") == "payments"


def test_settings_come_from_the_environment_with_typed_defaults(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("API_PORT", "9001")
    monkeypatch.setenv("WORKER_ALIVE_WINDOW_S", "2.5")
    cfg = Settings.from_env()
    assert (cfg.api_port, cfg.worker_alive_window_s) == (9001, 2.5)
    monkeypatch.setenv("API_PORT", "")  # set but empty: the default
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("KIRANA_DATA_DIR", "/srv/kirana")
    monkeypatch.setenv("RAZORPAY_WEBHOOK_SECRET_PREVIOUS", "")  # an empty text is a value
    cfg = Settings.from_env()
    assert (cfg.api_port, cfg.log_level, cfg.data_dir) == (Settings.api_port, "DEBUG", Path("/srv/kirana"))
    assert cfg.razorpay_webhook_secret_previous == ""
    monkeypatch.setenv("API_PORT", "eighty")
    with pytest.raises(ValueError, match="API_PORT must be an integer"):
        Settings.from_env()
    monkeypatch.setenv("API_PORT", "9001")
    monkeypatch.setenv("REDIS_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="REDIS_TIMEOUT_S must be a number"):
        Settings.from_env()
