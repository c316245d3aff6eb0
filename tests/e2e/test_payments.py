"""Online payment end to end: HTTP, the Razorpay sandbox, real workers. Captures are counted at the bank."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from kirana import db as collections
from kirana import payments, webhooks
from kirana.seed import STORES
from tasks.app import app
from tests.harness import Client

pytestmark = pytest.mark.e2e

STORE = STORES[0]["_id"]


@pytest.fixture(autouse=True)
def calm_sandbox(stack) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Every test starts and ends with a sandbox that injects no faults."""
    stack.sandbox.reset()
    yield
    stack.sandbox.reset()


def _product(stack, minimum: int = 10) -> dict:  # type: ignore[no-untyped-def]
    return stack.db[collections.PRODUCTS].find_one({"store_id": STORE, "stock": {"$gte": minimum}})


def _order(stack, customer: Client, method: str = "upi", qty: int = 2, **extra: Any) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    product = _product(stack)
    resp = customer.submit({"store_id": STORE, "payment_method": method,
                            "items": [{"sku": product["sku"], "qty": qty}], **extra})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"], product


def _wait(customer: Client, order_id: str, status: str, timeout: float = 40.0, attempt: int | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        order = customer.order(order_id)
        if order["status"] == status and (attempt is None or order.get("payment", {}).get("attempt") == attempt):
            return order
        assert time.monotonic() < deadline, f"{order_id} is {order['status']}, not {status}"
        time.sleep(0.05)


def _verify(customer: Client, paid: dict) -> requests.Response:
    return customer.http.post(customer.url("/api/v1/payments/verify"), json={
        "razorpay_order_id": paid["razorpay_order_id"], "razorpay_payment_id": paid["razorpay_payment_id"],
        "razorpay_signature": paid["razorpay_signature"]}, timeout=10)


def _captures(stack, rzp_payment_id: str) -> int:  # type: ignore[no-untyped-def]
    return int(stack.sandbox.stats()["captures"].get(rzp_payment_id, 0))


def test_upi_payment_confirms_the_order_with_one_capture(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, product = _order(stack, customer, "upi")
    awaiting = _wait(customer, order_id, "awaiting_payment")
    checkout = awaiting["payment"]
    assert checkout["key_id"] == stack.cfg.razorpay_key_id
    assert checkout["amount_paise"] == awaiting["total_paise"] == 2 * product["price_paise"]

    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "upi", flow="intent", vpa="asha@okicici",
                                  outcome="success")
    assert _verify(customer, paid).status_code == 202
    confirmed = _wait(customer, order_id, "confirmed")

    assert [e["status"] for e in confirmed["events"]] == ["accepted", "processing", "reserved", "awaiting_payment",
                                                           "confirmed"]
    assert _captures(stack, paid["razorpay_payment_id"]) == 1
    assert stack.db[collections.PRODUCTS].find_one({"_id": product["_id"]})["stock"] == product["stock"] - 2


def test_a_bad_checkout_signature_is_refused(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")

    resp = _verify(customer, paid | {"razorpay_signature": "0" * 64})

    assert resp.status_code == 400 and resp.json()["type"] == "/problems/invalid-signature"


def test_a_failed_card_payment_can_be_retried_with_a_new_attempt(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, _ = _order(stack, customer, "card")
    first = _wait(customer, order_id, "awaiting_payment")["payment"]
    stack.sandbox.checkout(first["razorpay_order_id"], "fail", method="card")
    _wait(customer, order_id, "payment_failed")

    retried = customer.http.post(customer.url(f"/api/v1/orders/{order_id}/retry-payment"), timeout=10)
    second = _wait(customer, order_id, "awaiting_payment", attempt=2)["payment"]
    paid = stack.sandbox.checkout(second["razorpay_order_id"], "authorize", method="card")
    _verify(customer, paid)
    confirmed = _wait(customer, order_id, "confirmed")

    assert retried.status_code == 202
    assert second["razorpay_order_id"] != first["razorpay_order_id"], "a new gateway order for every attempt"
    assert confirmed["payment"]["attempt"] == 2
    assert _captures(stack, paid["razorpay_payment_id"]) == 1
    assert [e["status"] for e in confirmed["events"]][-4:] == ["payment_failed", "reserved", "awaiting_payment",
                                                                 "confirmed"]


def test_the_same_webhook_ten_times_captures_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.control(webhook_duplicates=10)
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    calls_before = stack.sandbox.stats()["capture_calls"]

    # The app never reports back: only the (duplicated) webhooks drive the capture.
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    _wait(customer, order_id, "confirmed")
    time.sleep(1.0)  # let every duplicate land

    assert _captures(stack, paid["razorpay_payment_id"]) == 1
    assert stack.sandbox.stats()["capture_calls"] - calls_before == 1
    authorized = stack.db[payments.WEBHOOK_EVENTS].find({"event": "payment.authorized"})
    assert sum(paid["razorpay_payment_id"] in e["body"] for e in authorized) == 1


def test_upi_failed_then_captured_ends_confirmed(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, _ = _order(stack, customer, "upi")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]

    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "upi", flow="collect", vpa="ravi@okaxis",
                                  outcome="failed_then_captured")
    confirmed = _wait(customer, order_id, "confirmed")

    assert "payment_failed" in [e["status"] for e in confirmed["events"]]
    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def _post_webhook(stack, body: bytes, signature: str | None, event_id: str) -> requests.Response:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": event_id}
    if signature is not None:
        headers["X-Razorpay-Signature"] = signature
    return requests.post(stack.url("/webhooks/razorpay"), data=body, headers=headers, timeout=10)


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_webhooks_with_a_missing_or_bad_signature_are_refused_and_not_stored(stack) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"entity": "event", "event": "payment.captured", "payload": {}}).encode()
    event_id = f"evt_{uuid.uuid4().hex[:14]}"

    missing = _post_webhook(stack, body, None, event_id)
    bad = _post_webhook(stack, body, _sign("not-our-secret", body), event_id)
    tampered = _post_webhook(stack, body + b" ", _sign(stack.cfg.razorpay_webhook_secret, body), event_id)

    assert missing.status_code == bad.status_code == tampered.status_code == 400
    assert stack.db[payments.WEBHOOK_EVENTS].count_documents({"_id": event_id}) == 0


def test_webhooks_signed_with_the_previous_secret_are_accepted_during_rotation(stack) -> None:  # type: ignore[no-untyped-def]
    # A body of its own: the same body under another event id is a duplicate (what it says is the key).
    body = json.dumps({"entity": "event", "event": "account.updated", "payload": {},
                       "created_at": uuid.uuid4().int % 10**9}).encode()
    event_id = f"evt_{uuid.uuid4().hex[:14]}"

    old = _post_webhook(stack, body, _sign(stack.cfg.razorpay_webhook_secret_previous, body), event_id)
    again = _post_webhook(stack, body, _sign(stack.cfg.razorpay_webhook_secret, body), event_id)

    assert old.status_code == 200 and old.json()["status"] == "accepted"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    deadline = time.monotonic() + 10
    while stack.db[payments.WEBHOOK_EVENTS].find_one({"_id": event_id})["status"] == "received":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stack.db[payments.WEBHOOK_EVENTS].find_one({"_id": event_id})["status"] == "ignored"


def test_a_capture_answering_503_twice_is_retried_and_captures_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.control(capture_failures=2, capture_failure_status=503)
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    calls_before = stack.sandbox.stats()["capture_calls"]

    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    _wait(customer, order_id, "confirmed", timeout=40)

    assert _captures(stack, paid["razorpay_payment_id"]) == 1
    assert stack.sandbox.stats()["capture_calls"] - calls_before == 3


def test_a_capture_that_times_out_after_the_bank_captured_is_not_repeated(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.control(capture_delay_s=2 * stack.cfg.razorpay_timeout_s, capture_delay_count=1,
                          webhook_mode="drop")
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    calls_before = stack.sandbox.stats()["capture_calls"]

    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    _verify(customer, paid)
    _wait(customer, order_id, "confirmed", timeout=40)

    assert _captures(stack, paid["razorpay_payment_id"]) == 1
    assert stack.sandbox.stats()["capture_calls"] - calls_before == 1, "the retry must re-read, not capture again"


def test_cancelling_a_paid_order_refunds_it_and_restocks(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, product = _order(stack, customer, "card", qty=3)
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    _verify(customer, paid)
    _wait(customer, order_id, "confirmed")
    refunds_before = stack.sandbox.stats()["refunds"]

    cancelled = customer.http.post(customer.url(f"/api/v1/orders/{order_id}/cancel"), timeout=10)
    refunded = _wait(customer, order_id, "refunded")

    assert cancelled.status_code == 202 and cancelled.json()["status"] == "refund_pending"
    assert [e["status"] for e in refunded["events"]][-3:] == ["confirmed", "refund_pending", "refunded"]
    assert stack.sandbox.stats()["refunds"] - refunds_before == 1
    assert stack.db[collections.PRODUCTS].find_one({"_id": product["_id"]})["stock"] == product["stock"]
    again = customer.http.post(customer.url(f"/api/v1/orders/{order_id}/cancel"), timeout=10)
    assert again.status_code == 409


def _reconcile() -> None:
    app.send_task("payments.reconcile")


def test_reconciliation_confirms_an_order_whose_webhooks_were_all_dropped(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.control(webhook_mode="drop")
    order_id, _ = _order(stack, customer, "upi")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    # Paid late by the bank, and neither the app nor a webhook ever tells us.
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "upi", flow="collect", vpa="x@okhdfc",
                                  outcome="failed_then_captured")
    time.sleep(stack.cfg.payment_reconcile_after_s + 0.5)
    assert customer.order(order_id)["status"] == "awaiting_payment"

    _reconcile()
    _wait(customer, order_id, "confirmed")

    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def test_an_authorized_payment_without_webhooks_is_captured_by_reconciliation(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.control(webhook_mode="drop")
    order_id, _ = _order(stack, customer, "netbanking")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="netbanking")
    time.sleep(stack.cfg.payment_reconcile_after_s + 0.5)

    _reconcile()
    _wait(customer, order_id, "confirmed")

    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def test_an_unpaid_order_expires_and_gives_its_stock_back(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, product = _order(stack, customer, "upi", qty=4)
    _wait(customer, order_id, "awaiting_payment")
    held = stack.db[collections.PRODUCTS].find_one({"_id": product["_id"]})["stock"]
    assert held == product["stock"] - 4
    # Its deadline passes.
    stack.db[collections.ORDERS].update_one({"_id": order_id}, {"$set": {"pay_by_ms": 1}})

    app.send_task("payments.expire_unpaid")
    expired = _wait(customer, order_id, "expired")

    assert expired["events"][-1]["status"] == "expired"
    # The stock comes back right after the status changes.
    deadline = time.monotonic() + 5
    while stack.db[collections.PRODUCTS].find_one({"_id": product["_id"]})["stock"] != product["stock"]:
        assert time.monotonic() < deadline, "the expired order kept its stock"
        time.sleep(0.05)


def test_a_payment_captured_after_expiry_is_refunded(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    stack.db[collections.ORDERS].update_one({"_id": order_id}, {"$set": {"pay_by_ms": 1}})
    app.send_task("payments.expire_unpaid")
    _wait(customer, order_id, "expired")
    refunds_before = stack.sandbox.stats()["refunds"]

    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    _verify(customer, paid)
    deadline = time.monotonic() + 20
    while stack.sandbox.stats()["refunds"] == refunds_before:
        assert time.monotonic() < deadline, "the late payment was never refunded"
        time.sleep(0.1)

    assert customer.order(order_id)["status"] == "expired"
    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def test_a_saved_card_is_listed_paid_with_and_deleted(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card", save=True,
                                  customer_id=checkout["customer_id"])
    _verify(customer, paid)
    _wait(customer, order_id, "confirmed")

    saved = customer.http.get(customer.url("/api/v1/payment-methods"), timeout=10).json()["items"]
    assert len(saved) == 1
    token_id = saved[0]["id"]
    second_id, _ = _order(stack, customer, "token", token_id=token_id)
    second = _wait(customer, second_id, "awaiting_payment")["payment"]
    assert second["token_id"] == token_id
    paid_again = stack.sandbox.checkout(second["razorpay_order_id"], "authorize", method="card", token_id=token_id,
                                        customer_id=second["customer_id"])
    _verify(customer, paid_again)
    _wait(customer, second_id, "confirmed")

    assert customer.http.delete(customer.url(f"/api/v1/payment-methods/{token_id}"), timeout=10).status_code == 204
    assert customer.http.get(customer.url("/api/v1/payment-methods"), timeout=10).json()["items"] == []
    assert customer.http.delete(customer.url(f"/api/v1/payment-methods/{token_id}"), timeout=10).status_code == 404


def test_another_customer_cannot_verify_or_cancel_my_order(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    stranger = stack.customer()

    assert _verify(stranger, paid).status_code == 404
    assert stranger.http.post(stranger.url(f"/api/v1/orders/{order_id}/cancel"), timeout=10).status_code == 404


def test_events_delivered_in_reverse_never_move_a_payment_backwards(stack, customer) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.control(webhook_mode="hold")
    order_id, _ = _order(stack, customer, "card")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "authorize", method="card")
    _verify(customer, paid)
    _wait(customer, order_id, "confirmed")

    # captured / order.paid arrive first, the stale "authorized" last.
    stack.sandbox.flush("reverse")
    time.sleep(1.5)

    attempt = stack.db[payments.PAYMENTS].find_one({"razorpay_payment_id": paid["razorpay_payment_id"]})
    assert attempt["status"] == "captured"
    assert customer.order(order_id)["status"] == "confirmed"
    assert _captures(stack, paid["razorpay_payment_id"]) == 1


@pytest.mark.parametrize("kind", ["payment.captured", "order.paid", "payment.failed"])
def test_a_signed_payment_event_the_gateway_does_not_bear_out_moves_nothing(stack, customer, kind) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 3: a validly signed event (a leaked secret, a replay) is not the gateway's word.

    The event names the order's real gateway order and the right amount, but a payment Razorpay
    never had. Handling re-reads the gateway order's payments: none, so nothing is captured,
    failed or confirmed, and the attempt keeps no payment id from the body. The customer then
    pays for real and the order confirms as usual.
    """
    order_id, _ = _order(stack, customer, "upi")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    forged_id = f"pay_forged{uuid.uuid4().hex[:8]}"
    body = json.dumps({"entity": "event", "event": kind, "payload": {"payment": {"entity": {
        "id": forged_id, "entity": "payment", "order_id": checkout["razorpay_order_id"],
        "amount": checkout["amount_paise"], "currency": "INR",
        "status": "failed" if kind == "payment.failed" else "captured"}}}}).encode()
    event_id = f"evt_{uuid.uuid4().hex[:14]}"

    accepted = _post_webhook(stack, body, _sign(stack.cfg.razorpay_webhook_secret, body), event_id)

    assert accepted.status_code == 200, accepted.text
    deadline = time.monotonic() + 20
    while (stack.db[payments.WEBHOOK_EVENTS].find_one({"_id": event_id}) or {}).get("status") != "handled":
        assert time.monotonic() < deadline, "the event was never handled"
        time.sleep(0.05)
    time.sleep(1.0)  # the re-read it asked for (payments.capture) runs meanwhile
    attempt = stack.db[payments.PAYMENTS].find_one({"razorpay_order_id": checkout["razorpay_order_id"]})
    assert attempt["status"] == "created"
    assert attempt.get("razorpay_payment_id") in (None, "")
    assert customer.order(order_id)["status"] == "awaiting_payment"

    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "upi", flow="intent", vpa="asha@okicici",
                                  outcome="success")
    assert _verify(customer, paid).status_code == 202
    _wait(customer, order_id, "confirmed")
    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def test_a_signed_body_re_posted_under_a_new_event_id_is_a_duplicate(stack) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 10: the x-razorpay-event-id header is outside the signature."""
    body = json.dumps({"entity": "event", "event": "payment.failed", "payload": {"payment": {"entity": {
        "id": f"pay_{uuid.uuid4().hex[:14]}", "entity": "payment", "order_id": "order_none", "status": "failed"}}}}
    ).encode()
    signature = _sign(stack.cfg.razorpay_webhook_secret, body)
    first, second = (f"evt_{uuid.uuid4().hex[:14]}" for _ in range(2))

    answers = [_post_webhook(stack, body, signature, event_id).json()["status"] for event_id in (first, second)]

    assert answers == ["accepted", "duplicate"]
    assert stack.db[payments.WEBHOOK_EVENTS].count_documents({"_id": {"$in": [first, second]}}) == 1


def _authorized_without_webhooks(stack, customer) -> tuple[str, dict, dict]:  # type: ignore[no-untyped-def]
    """A UPI order whose payment the bank authorized, with no webhook sent and no verify: nothing captures it yet."""
    stack.sandbox.control(webhook_mode="drop")
    order_id, _ = _order(stack, customer, "upi")
    checkout = _wait(customer, order_id, "awaiting_payment")["payment"]
    paid = stack.sandbox.checkout(checkout["razorpay_order_id"], "upi", flow="intent", vpa="asha@okicici",
                                  outcome="success")
    return order_id, checkout, paid


def test_a_webhook_whose_first_insert_reply_was_lost_is_handled_on_redelivery(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """The first delivery's insert landed but MongoDB's reply was lost: the API answered 503, and
    Razorpay's redelivery is a duplicate. It must still be handled (the chaos suite's MongoDB
    outage found such an order waiting for beat's reconcile)."""
    order_id, checkout, paid = _authorized_without_webhooks(stack, customer)
    body = json.dumps({"entity": "event", "event": "payment.authorized", "payload": {"payment": {"entity": {
        "id": paid["razorpay_payment_id"], "entity": "payment", "order_id": checkout["razorpay_order_id"],
        "amount": checkout["amount_paise"], "currency": "INR", "status": "authorized"}}}}).encode()
    event_id = f"evt_{uuid.uuid4().hex[:14]}"
    stack.db[payments.WEBHOOK_EVENTS].insert_one(webhooks.prepare(body, event_id))  # the landed first insert

    again = _post_webhook(stack, body, _sign(stack.cfg.razorpay_webhook_secret, body), event_id)

    assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text
    _wait(customer, order_id, "confirmed", timeout=15)
    assert stack.db[payments.WEBHOOK_EVENTS].find_one({"_id": event_id})["status"] == "handled"
    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def _leased(stack, payment_id: str, owner: str, for_ms: int) -> None:  # type: ignore[no-untyped-def]
    stack.db[payments.PAYMENTS].update_one({"_id": payment_id}, {"$set": {
        "status": "authorized", "capturing_until_ms": int(time.time() * 1000) + for_ms, "capturing_by": owner}})


def test_a_capture_retried_after_its_lease_write_reply_was_lost_takes_its_own_lease_back(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """The run wrote its capture lease, lost MongoDB's reply and retried (same task id): not busy with itself."""
    order_id, checkout, paid = _authorized_without_webhooks(stack, customer)
    payment_id = checkout["payment_id"]
    task_id = f"capture-{uuid.uuid4().hex}"
    _leased(stack, payment_id, task_id, for_ms=60_000)

    app.send_task("payments.capture", [payment_id], task_id=task_id)

    _wait(customer, order_id, "confirmed", timeout=10)  # well before the 60 s lease lapses
    assert _captures(stack, paid["razorpay_payment_id"]) == 1


def test_a_capture_finding_a_dead_runs_lease_tries_again_when_it_lapses(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """Another run took the lease and died with it: the busy run comes back once the lease lapses."""
    order_id, checkout, paid = _authorized_without_webhooks(stack, customer)
    payment_id = checkout["payment_id"]
    _leased(stack, payment_id, "a-run-that-died", for_ms=2_000)

    app.send_task("payments.capture", [payment_id])

    time.sleep(1.0)
    assert customer.order(order_id)["status"] == "awaiting_payment"  # busy while the lease holds
    _wait(customer, order_id, "confirmed", timeout=15)
    assert _captures(stack, paid["razorpay_payment_id"]) == 1
