"""The transitions table: every move, its guard, and the follow-ups it records, walked row by row."""

from __future__ import annotations

import pytest

from kirana import transitions
from kirana.orders import TERMINAL
from kirana.transitions import TABLE, TRANSITIONS, Status, follow_ups, row


def test_every_status_is_reachable_and_the_final_ones_have_no_way_out() -> None:
    reachable = {Status.ACCEPTED} | {m.to for m in TABLE}
    assert reachable == set(Status)
    assert all(not TRANSITIONS[s] for s in TERMINAL)
    assert {s for s in Status if not TRANSITIONS[s]} == set(TERMINAL)


def test_one_row_answers_each_move_and_every_row_says_its_guard() -> None:
    for status in Status:
        for target in TRANSITIONS[status]:
            assert len([m for m in TABLE if m.to == target and status in m.froms]) == 1, (status, target)
    assert all(m.guard for m in TABLE)


@pytest.mark.parametrize("move", TABLE, ids=lambda m: f"{'|'.join(sorted(m.froms))}->{m.to}")
def test_each_rows_follow_ups_name_registered_tasks_under_fixed_names(move: transitions.Move) -> None:
    from tasks.app import app

    app.loader.import_default_modules()
    detail = {"payment_id": "ord_1:p2", "reason": "out_of_stock"}
    intents = follow_ups("ord_1", move, attempt=2, detail=detail)

    assert len(intents) == len(move.follow_ups) + 1, "and the move's live update"
    assert all(intent.task in app.tasks or intent.task in transitions.INLINE for intent in intents.values()), intents
    assert follow_ups("ord_1", move, attempt=2, detail=detail) == intents, "a replayed move records the same"
    assert all("." not in name and not name.startswith("$") for name in intents), "names are MongoDB field names"


def test_what_happens_when_an_order_becomes_confirmed_rejected_or_refund_pending() -> None:
    confirmed = follow_ups("o", row(frozenset({Status.PROCESSING}), Status.CONFIRMED), at_ms=7)
    assert {n: (i.task, i.args) for n, i in confirmed.items()} == {
        "live-confirmed": ("live.order_update", ("o", "confirmed", 7)),
        "loyalty-confirmed": ("leaderboards.sync_order", ("o",)),
        "search-confirmed": ("search.index_dirty", ()),
        "notify-order_confirmed": ("notifications.order_event", ("o", "order_confirmed", {})),
    }
    rejected = follow_ups("o", row(frozenset({Status.PROCESSING}), Status.REJECTED), detail={"reason": "unknown_sku"})
    assert rejected["notify-order_rejected"].args == ("o", "order_rejected", {"reason": "unknown_sku"})
    refund = follow_ups("o", row(frozenset({Status.CONFIRMED}), Status.REFUND_PENDING), detail={"payment_id": "o:p1"})
    assert refund["refund"] == transitions.Intent("payments.refund", ("o:p1",))
    gateway = follow_ups("o", row(frozenset({Status.PAYMENT_FAILED}), Status.RESERVED), attempt=3)
    assert gateway["gateway_order-3"] == transitions.Intent("payments.create_order", ("o", 3))
    assert set(gateway) == {"gateway_order-3", "live-reserved-3"}


def test_placing_records_processing_and_the_accepted_notification() -> None:
    assert {n: i.task for n, i in follow_ups("o", None).items()} == {
        "process": "orders.process", "notify-order_accepted": "notifications.order_event",
        "live-accepted": "live.order_update"}


def test_a_move_the_table_lacks_has_no_row() -> None:
    assert row(frozenset({Status.CONFIRMED}), Status.REJECTED) is None
    assert row(frozenset({Status.ACCEPTED, Status.CONFIRMED}), Status.PROCESSING) is None
