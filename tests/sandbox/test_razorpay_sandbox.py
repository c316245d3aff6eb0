"""The Razorpay sandbox over real HTTP, driven by the official `razorpay` SDK.

One sandbox process (python -m sandbox) serves the whole module; a small werkzeug server
in a thread receives its webhooks. Every test resets the knobs first; data and counters
are shared, so tests look only at their own orders and payments.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import razorpay
import razorpay.errors
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from stack import servers

ROOT = Path(__file__).resolve().parents[2]
KEY_ID = "rzp_test_sandbox_suite"
KEY_SECRET = "suite-key-secret"
WEBHOOK_SECRET = "suite-webhook-secret"


@dataclass
class Hook:
    event_id: str
    signature: str
    body: str
    status: int

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return str(self.data["event"])

    def entity(self, name: str) -> dict[str, Any]:
        return dict(self.data["payload"][name]["entity"])


class Receiver:
    """Records every webhook; answers 500 to the first request whose body contains a marker, when told."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.hooks: list[Hook] = []
        self._fail_once: set[str] = set()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}/webhooks/razorpay"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        body = request.get_data(as_text=True)
        with self._cond:
            marker = next((m for m in self._fail_once if m in body), None)
            status = 200
            if marker is not None:
                self._fail_once.discard(marker)
                status = 500
            self.hooks.append(Hook(request.headers.get("x-razorpay-event-id", ""),
                                   request.headers.get("X-Razorpay-Signature", ""), body, status))
            self._cond.notify_all()
        return Response("{}", status=status, content_type="application/json")

    def fail_once_for(self, marker: str) -> None:
        with self._cond:
            self._fail_once.add(marker)

    def wait(self, match: Callable[[Hook], bool], count: int = 1, timeout: float = 5.0) -> list[Hook]:
        """The received webhooks that match, once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [h for h in self.hooks if match(h)]
                if len(found) >= count or time.monotonic() > deadline:
                    return found
                self._cond.wait(0.05)

    def about(self, entity_id: str, event: str | None = None, count: int = 1, timeout: float = 5.0) -> list[Hook]:
        return self.wait(lambda h: entity_id in h.body and (event is None or h.event == event), count, timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _sandbox_server(port: int, log: Path, *argv: str, **env: str) -> servers.Server:
    return servers.Server("razorpay-sandbox", [sys.executable, "-m", "sandbox", "--port", str(port), *argv], port,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, log=log, cwd=ROOT)


@pytest.fixture(scope="module")
def sandbox_url(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = servers.free_port()
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    env = {"RAZORPAY_KEY_ID": KEY_ID, "RAZORPAY_KEY_SECRET": KEY_SECRET, "RAZORPAY_WEBHOOK_SECRET": WEBHOOK_SECRET}
    with _sandbox_server(port, log, "--webhook-url", receiver.url, **env):
        url = f"http://127.0.0.1:{port}"
        servers.wait_http(f"{url}/_sandbox/healthz")
        yield url
    assert KEY_SECRET not in log.read_text() and WEBHOOK_SECRET not in log.read_text()


@pytest.fixture(autouse=True)
def _fresh_knobs(sandbox_url: str) -> None:
    requests.post(f"{sandbox_url}/_sandbox/reset", timeout=5).raise_for_status()


@pytest.fixture
def client(sandbox_url: str) -> razorpay.Client:
    c = razorpay.Client(auth=(KEY_ID, KEY_SECRET))
    c.base_url = sandbox_url
    return c


def control(url: str, **knobs: Any) -> dict[str, Any]:
    resp = requests.post(f"{url}/_sandbox/control", json=knobs, timeout=5)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def checkout(url: str, order_id: str, action: str, **body: Any) -> dict[str, Any]:
    resp = requests.post(f"{url}/_sandbox/checkout/{order_id}/{action}", json=body, timeout=5)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def stats(url: str) -> dict[str, Any]:
    return dict(requests.get(f"{url}/_sandbox/stats", timeout=5).json())


def new_order(client: razorpay.Client, amount: int = 49900, **extra: Any) -> dict[str, Any]:
    return dict(client.order.create(data={"amount": amount, "currency": "INR", "receipt": "rcpt-1", **extra}))


def authorized(client: razorpay.Client, url: str, amount: int = 49900, **body: Any) -> tuple[dict[str, Any], str]:
    order = new_order(client, amount)
    answer = checkout(url, order["id"], "authorize", method="card", **body)
    return order, answer["razorpay_payment_id"]


def capture(client: razorpay.Client, payment_id: str, amount: int, **kwargs: Any) -> dict[str, Any]:
    return dict(client.payment.capture(payment_id, amount, data={"currency": "INR"}, **kwargs))


def verify_hook(client: razorpay.Client, hook: Hook, secret: str = WEBHOOK_SECRET) -> None:
    assert client.utility.verify_webhook_signature(hook.body, hook.signature, secret)


# -- the REST API --------------------------------------------------------------------------


def test_every_v1_route_wants_the_key(sandbox_url: str, client: razorpay.Client) -> None:
    resp = requests.get(f"{sandbox_url}/v1/orders/order_x", timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"] == {**resp.json()["error"], "code": "BAD_REQUEST_ERROR",
                                    "description": "Authentication failed"}
    wrong = razorpay.Client(auth=(KEY_ID, "not-the-secret"))
    wrong.base_url = sandbox_url
    with pytest.raises(razorpay.errors.BadRequestError, match="Authentication failed"):
        wrong.order.create(data={"amount": 1000, "currency": "INR"})
    assert requests.get(f"{sandbox_url}/_sandbox/healthz", timeout=5).json() == {"status": "ok"}


def test_orders_are_created_fetched_and_validated(client: razorpay.Client) -> None:
    order = new_order(client, 120000, notes={"kirana_order": "ord_1"})
    assert order["id"].startswith("order_") and len(order["id"]) == len("order_") + 14
    assert order["entity"] == "order" and order["status"] == "created" and order["attempts"] == 0
    assert (order["amount"], order["amount_paid"], order["amount_due"]) == (120000, 0, 120000)
    assert order["notes"] == {"kirana_order": "ord_1"} and order["receipt"] == "rcpt-1"
    assert client.order.fetch(order["id"]) == order
    assert client.order.payments(order["id"]) == {"entity": "collection", "count": 0, "items": []}
    with pytest.raises(razorpay.errors.BadRequestError, match=r"at least|atleast"):
        client.order.create(data={"amount": 50, "currency": "INR"})
    with pytest.raises(razorpay.errors.BadRequestError, match="currency"):
        client.order.create(data={"amount": 5000})
    with pytest.raises(razorpay.errors.BadRequestError, match="does not exist"):
        client.order.fetch("order_doesnotexist00")


def test_authorize_signs_like_checkout_and_capture_happens_once(sandbox_url: str, client: razorpay.Client) -> None:
    order = new_order(client)
    answer = checkout(sandbox_url, order["id"], "authorize", method="card")
    assert answer["razorpay_order_id"] == order["id"]
    assert client.utility.verify_payment_signature(answer)
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        client.utility.verify_payment_signature({**answer, "razorpay_payment_id": "pay_forged00000000"})
    pid = answer["razorpay_payment_id"]
    payment = client.payment.fetch(pid)
    assert (payment["status"], payment["captured"], payment["order_id"], payment["method"]) == (
        "authorized", False, order["id"], "card")
    assert client.order.fetch(order["id"])["status"] == "attempted"

    captured = capture(client, pid, order["amount"])
    assert (captured["status"], captured["captured"]) == ("captured", True)
    assert client.order.fetch(order["id"])["status"] == "paid"
    assert client.order.payments(order["id"])["items"][0]["id"] == pid
    with pytest.raises(razorpay.errors.BadRequestError, match="already been captured"):
        capture(client, pid, order["amount"])
    assert stats(sandbox_url)["captures"][pid] == 1


def test_capture_refuses_a_wrong_amount_and_a_failed_payment(sandbox_url: str, client: razorpay.Client) -> None:
    _, pid = authorized(client, sandbox_url, 30000)
    with pytest.raises(razorpay.errors.BadRequestError, match="must be equal to the amount authorized"):
        capture(client, pid, 29900)
    assert client.payment.fetch(pid)["status"] == "authorized"

    failed_order = new_order(client)
    failed = checkout(sandbox_url, failed_order["id"], "fail", method="card")
    assert failed["error"]["code"] == "BAD_REQUEST_ERROR"
    payment = client.payment.fetch(failed["razorpay_payment_id"])
    assert (payment["status"], payment["error_description"]) == ("failed", "Payment failed")
    with pytest.raises(razorpay.errors.BadRequestError, match="Only payments which have been authorized"):
        capture(client, payment["id"], failed_order["amount"])
    assert pid not in stats(sandbox_url)["captures"]


def test_injected_capture_failure_answers_503_and_captures_nothing(sandbox_url: str,
                                                                   client: razorpay.Client) -> None:
    order, pid = authorized(client, sandbox_url)
    control(sandbox_url, capture_failures=1, capture_failure_status=503)
    calls = stats(sandbox_url)["capture_calls"]
    with pytest.raises(razorpay.errors.ServerError):
        capture(client, pid, order["amount"])
    assert client.payment.fetch(pid)["status"] == "authorized"
    assert capture(client, pid, order["amount"])["status"] == "captured"
    after = stats(sandbox_url)
    assert after["capture_calls"] == calls + 2
    assert after["captures"][pid] == 1


def test_slow_capture_times_the_client_out_after_the_bank_captured(sandbox_url: str,
                                                                   client: razorpay.Client) -> None:
    order, pid = authorized(client, sandbox_url)
    control(sandbox_url, capture_delay_s=1.5, capture_delay_count=1)
    with pytest.raises(requests.exceptions.Timeout):
        capture(client, pid, order["amount"], timeout=0.5)
    assert client.payment.fetch(pid)["status"] == "captured"
    with pytest.raises(razorpay.errors.BadRequestError, match="already been captured"):
        capture(client, pid, order["amount"], timeout=5)  # the delay was for one call only
    assert stats(sandbox_url)["captures"][pid] == 1


def test_refunds_update_the_payment_and_send_refund_processed(sandbox_url: str, client: razorpay.Client,
                                                              receiver: Receiver) -> None:
    _, pid = authorized(client, sandbox_url, 50000)
    capture(client, pid, 50000)
    refunds_before = stats(sandbox_url)["refunds"]
    refund = client.payment.refund(pid, data={"amount": 20000, "receipt": "refund-1"})
    assert refund["id"].startswith("rfnd_") and refund["entity"] == "refund"
    assert (refund["amount"], refund["payment_id"], refund["status"]) == (20000, pid, "processed")
    assert client.refund.fetch(refund["id"]) == refund
    payment = client.payment.fetch(pid)
    assert (payment["status"], payment["amount_refunded"], payment["refund_status"]) == ("captured", 20000, "partial")
    with pytest.raises(razorpay.errors.BadRequestError, match="greater than"):
        client.payment.refund(pid, data={"amount": 30001})
    rest = client.payment.refund(pid, data={})
    assert rest["amount"] == 30000
    payment = client.payment.fetch(pid)
    assert (payment["status"], payment["amount_refunded"], payment["refund_status"]) == ("refunded", 50000, "full")
    assert stats(sandbox_url)["refunds"] == refunds_before + 2

    hooks = receiver.about(refund["id"], "refund.processed")
    assert len(hooks) == 1
    verify_hook(client, hooks[0])
    assert hooks[0].data["contains"] == ["refund", "payment"]
    assert hooks[0].entity("refund")["id"] == refund["id"]
    assert hooks[0].entity("payment")["amount_refunded"] == 20000


# -- webhooks ------------------------------------------------------------------------------


def test_webhooks_are_signed_shaped_like_razorpay_and_retried_after_a_500(
        sandbox_url: str, client: razorpay.Client, receiver: Receiver) -> None:
    order = new_order(client)
    receiver.fail_once_for(order["id"])
    pid = checkout(sandbox_url, order["id"], "authorize", method="netbanking")["razorpay_payment_id"]
    hooks = receiver.about(pid, "payment.authorized", count=2)
    assert [h.status for h in hooks] == [500, 200]
    assert hooks[0].event_id == hooks[1].event_id and hooks[0].body == hooks[1].body
    for hook in hooks:
        verify_hook(client, hook)
    body = hooks[0].data
    assert {k: body[k] for k in ("entity", "account_id", "event", "contains")} == {
        "entity": "event", "account_id": "acc_sandbox", "event": "payment.authorized", "contains": ["payment"]}
    assert body["payload"]["payment"]["entity"]["id"] == pid
    assert body["payload"]["payment"]["entity"]["method"] == "netbanking"

    capture(client, pid, order["amount"])
    paid = receiver.about(pid, "order.paid")[0]
    assert paid.data["contains"] == ["payment", "order"]
    assert paid.entity("order")["status"] == "paid" and paid.entity("payment")["status"] == "captured"

    events = requests.get(f"{sandbox_url}/_sandbox/events", params={"id": pid}, timeout=5).json()["items"]
    authorized_event = next(e for e in events if e["event"] == "payment.authorized")
    assert authorized_event["id"] == hooks[0].event_id
    assert authorized_event["deliveries"][0]["attempts"] == 2
    assert authorized_event["deliveries"][0]["last_status"] == 200
    assert stats(sandbox_url)["webhooks"]["failed_attempts"] >= 1


def test_duplicates_deliver_every_event_n_times_with_one_event_id(sandbox_url: str, client: razorpay.Client,
                                                                 receiver: Receiver) -> None:
    control(sandbox_url, webhook_duplicates=3)
    _, pid = authorized(client, sandbox_url)
    hooks = receiver.about(pid, "payment.authorized", count=3)
    time.sleep(0.2)
    hooks = receiver.about(pid, "payment.authorized", count=3)
    assert len(hooks) == 3
    assert len({h.event_id for h in hooks}) == 1 and hooks[0].event_id.startswith("evt_")
    for hook in hooks:
        verify_hook(client, hook)


def test_held_events_are_flushed_in_reverse(sandbox_url: str, client: razorpay.Client,
                                            receiver: Receiver) -> None:
    control(sandbox_url, webhook_mode="hold")
    order, pid = authorized(client, sandbox_url)
    capture(client, pid, order["amount"])
    assert stats(sandbox_url)["webhooks"]["held"] == 3
    assert receiver.about(pid, timeout=0.3) == []
    resp = requests.post(f"{sandbox_url}/_sandbox/webhooks/flush", json={"order": "reverse"}, timeout=5)
    assert resp.json()["count"] == 3
    hooks = receiver.about(pid, count=3)
    assert [h.event for h in hooks] == ["order.paid", "payment.captured", "payment.authorized"]
    assert stats(sandbox_url)["webhooks"]["held"] == 0


def test_dropped_events_are_recorded_but_never_sent(sandbox_url: str, client: razorpay.Client,
                                                    receiver: Receiver) -> None:
    dropped = stats(sandbox_url)["webhooks"]["dropped"]
    control(sandbox_url, webhook_mode="drop")
    _, pid = authorized(client, sandbox_url)
    assert receiver.about(pid, timeout=0.3) == []
    assert stats(sandbox_url)["webhooks"]["dropped"] == dropped + 1
    events = requests.get(f"{sandbox_url}/_sandbox/events", params={"id": pid}, timeout=5).json()["items"]
    assert [(e["event"], e["state"]) for e in events] == [("payment.authorized", "dropped")]


def test_a_new_webhook_secret_signs_from_then_on(sandbox_url: str, client: razorpay.Client,
                                                 receiver: Receiver) -> None:
    knobs = control(sandbox_url, webhook_secret="rotated-secret")
    assert "rotated-secret" not in json.dumps(knobs)
    _, pid = authorized(client, sandbox_url)
    hook = receiver.about(pid, "payment.authorized")[0]
    verify_hook(client, hook, "rotated-secret")
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        verify_hook(client, hook, WEBHOOK_SECRET)


# -- UPI and saved cards -------------------------------------------------------------------


def test_upi_success_and_failure(sandbox_url: str, client: razorpay.Client) -> None:
    order = new_order(client)
    answer = checkout(sandbox_url, order["id"], "upi", flow="collect", vpa="asha@okicici", outcome="failure")
    assert client.payment.fetch(answer["razorpay_payment_id"])["status"] == "failed"
    answer = checkout(sandbox_url, order["id"], "upi", flow="intent", outcome="success")
    assert client.utility.verify_payment_signature(answer)
    payment = client.payment.fetch(answer["razorpay_payment_id"])
    assert (payment["method"], payment["status"], payment["vpa"]) == ("upi", "authorized", "asha@okicici")
    assert client.order.fetch(order["id"])["attempts"] == 2


def test_upi_failed_then_captured_sends_failed_then_captured_for_one_payment(
        sandbox_url: str, client: razorpay.Client, receiver: Receiver) -> None:
    calls = stats(sandbox_url)["capture_calls"]
    order = new_order(client)
    answer = checkout(sandbox_url, order["id"], "upi", flow="collect", outcome="failed_then_captured")
    pid = answer["razorpay_payment_id"]
    assert answer["error"]["code"] == "BAD_REQUEST_ERROR"
    hooks = receiver.wait(lambda h: pid in h.body and h.event.startswith("payment."), count=2)
    assert [h.event for h in hooks] == ["payment.failed", "payment.captured"]
    assert {h.entity("payment")["id"] for h in hooks} == {pid}
    payment = client.payment.fetch(pid)
    assert (payment["status"], payment["captured"]) == ("captured", True)
    assert client.order.fetch(order["id"])["status"] == "paid"
    after = stats(sandbox_url)
    assert after["captures"][pid] == 1 and after["capture_calls"] == calls


def test_saved_cards_are_listed_used_and_deleted(sandbox_url: str, client: razorpay.Client) -> None:
    customer = client.customer.create(data={"name": "Asha", "email": "asha.tokens@example.in", "fail_existing": "0"})
    assert customer["id"].startswith("cust_")
    again = client.customer.create(data={"name": "Asha", "email": "asha.tokens@example.in", "fail_existing": "0"})
    assert again["id"] == customer["id"]
    with pytest.raises(razorpay.errors.BadRequestError, match="already exists"):
        client.customer.create(data={"name": "Asha", "email": "asha.tokens@example.in"})
    assert client.customer.fetch(customer["id"]) == customer

    _, pid = authorized(client, sandbox_url, save=True, customer_id=customer["id"],
                        card={"last4": "4242", "network": "Visa"})
    token_id = client.payment.fetch(pid)["token_id"]
    tokens = client.token.all(customer["id"])
    assert tokens["count"] == 1 and tokens["entity"] == "collection"
    token = tokens["items"][0]
    assert (token["id"], token["method"], token["customer_id"]) == (token_id, "card", customer["id"])
    assert token["card"]["last4"] == "4242" and token["card"]["network"] == "Visa"
    assert client.token.fetch(customer["id"], token_id) == token

    order = new_order(client)
    answer = checkout(sandbox_url, order["id"], "authorize", customer_id=customer["id"], token_id=token_id)
    assert client.utility.verify_payment_signature(answer)
    assert client.payment.fetch(answer["razorpay_payment_id"])["token_id"] == token_id

    stranger = client.customer.create(data={"name": "Ravi", "email": "ravi.tokens@example.in"})
    resp = requests.post(f"{sandbox_url}/_sandbox/checkout/{new_order(client)['id']}/authorize",
                         json={"customer_id": stranger["id"], "token_id": token_id}, timeout=5)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BAD_REQUEST_ERROR"

    assert client.token.delete(customer["id"], token_id) == {"deleted": True}
    assert client.token.all(customer["id"])["count"] == 0
    with pytest.raises(razorpay.errors.BadRequestError, match="does not exist"):
        client.token.delete(customer["id"], token_id)


# -- the process ---------------------------------------------------------------------------


def test_config_from_the_environment_and_a_clean_stop(tmp_path: Path) -> None:
    port = servers.free_port()
    server = _sandbox_server(port, tmp_path / "sandbox.log", RAZORPAY_KEY_ID="rzp_test_env",
                             RAZORPAY_KEY_SECRET="env-secret", SANDBOX_WEBHOOK_URL="http://127.0.0.1:9/hooks")
    with server:
        url = f"http://127.0.0.1:{port}"
        servers.wait_http(f"{url}/_sandbox/healthz")
        assert requests.get(f"{url}/_sandbox/control", timeout=5).json()["webhook_url"] == "http://127.0.0.1:9/hooks"
        env_client = razorpay.Client(auth=("rzp_test_env", "env-secret"))
        env_client.base_url = url
        assert env_client.order.create(data={"amount": 1000, "currency": "INR"})["status"] == "created"
        assert server.proc is not None
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.proc.wait(5) == 0
        assert time.monotonic() - started < 3
