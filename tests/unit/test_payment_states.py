"""The payment attempt's forward-only state rules."""

from __future__ import annotations

from kirana.orders import TERMINAL, TRANSITIONS, UNPAID, Status
from kirana.payments import ADVANCES_FROM, PAID, PaymentStatus


def test_nothing_moves_a_paid_payment_back_to_authorized_or_failed() -> None:
    for paid in PAID:
        assert paid not in ADVANCES_FROM[PaymentStatus.AUTHORIZED]
        assert paid not in ADVANCES_FROM[PaymentStatus.FAILED]


def test_a_failed_payment_may_still_succeed_late_but_not_the_reverse() -> None:
    assert PaymentStatus.FAILED in ADVANCES_FROM[PaymentStatus.CAPTURED]
    assert PaymentStatus.CAPTURED not in ADVANCES_FROM[PaymentStatus.FAILED]
    assert PaymentStatus.AUTHORIZED not in ADVANCES_FROM[PaymentStatus.FAILED]


def test_only_a_captured_payment_is_refunded() -> None:
    assert ADVANCES_FROM[PaymentStatus.REFUND_PENDING] == {PaymentStatus.CAPTURED}


def test_every_unpaid_order_can_be_confirmed_expired_or_cancelled() -> None:
    for status in UNPAID:
        assert {Status.CONFIRMED, Status.EXPIRED, Status.CANCELLED} <= TRANSITIONS[status]
    assert all(not TRANSITIONS[s] for s in TERMINAL)
