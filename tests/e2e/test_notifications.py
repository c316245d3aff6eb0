"""Notifications end to end: real SMTP, the SMS/push sandbox, real workers, preferences, retries, once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from kirana import notifications
from kirana.permissions import Role
from kirana.seed import STORES
from tasks.app import app
from tests.harness import Client
from tests.harness import eventually as _eventually

pytestmark = pytest.mark.e2e

STORE = STORES[0]["_id"]


@pytest.fixture(autouse=True)
def calm_messaging(stack) -> Iterator[None]:  # type: ignore[no-untyped-def]
    requests.post(f"{stack.messaging_url}/_sandbox/reset", timeout=10)
    yield
    requests.post(f"{stack.messaging_url}/_sandbox/reset", timeout=10)


def _mail_to(stack, address: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return requests.get(f"{stack.mailbox_url}/messages", params={"to": address}, timeout=10).json()


def _sms_to(stack, phone: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return requests.get(f"{stack.messaging_url}/_sandbox/messages", params={"to": phone, "channel": "sms"},
                        timeout=10).json()


def _preferences(client: Client, **prefs: Any) -> None:
    resp = client.http.put(client.url("/api/v1/notifications/preferences"), json=prefs, timeout=10)
    assert resp.status_code == 200, resp.text


def _cod_order(stack, client: Client) -> str:  # type: ignore[no-untyped-def]
    product = stack.db["products"].find_one({"store_id": STORE, "stock": {"$gte": 5}})
    resp = client.submit({"store_id": STORE, "payment_method": "cod", "items": [{"sku": product["sku"], "qty": 1}]})
    assert resp.status_code == 202
    return resp.json()["id"]


def test_the_confirmation_mail_arrives_over_smtp_in_the_customers_language(stack, customer) -> None:  # type: ignore[no-untyped-def]
    _preferences(customer, language="hi", channels={"email": True, "push": False, "sms": False, "in_app": True})

    order_id = _cod_order(stack, customer)
    mails = _eventually(lambda: [m for m in _mail_to(stack, customer.email) if order_id in m["text"]
                                 and "पक्का" in m["subject"]], what="the Hindi confirmation mail")

    assert mails[0]["subject"] == "ऑर्डर पक्का हुआ"
    assert f"आपका ऑर्डर {order_id} पक्का हो गया है" in mails[0]["text"]


def test_the_inbox_shows_each_notification_with_its_delivery_log_and_can_be_marked_read(stack, customer) -> None:  # type: ignore[no-untyped-def]
    order_id = _cod_order(stack, customer)
    inbox = _eventually(lambda: [n for n in customer.http.get(customer.url("/api/v1/notifications"), timeout=10)
                                 .json()["items"] if n["event"] == "order_confirmed" and n["status"] == "sent"
                                 and n["channel"] == "email"], what="a sent confirmation in the inbox")
    in_app = [n for n in customer.http.get(customer.url("/api/v1/notifications"), timeout=10).json()["items"]
              if n["channel"] == "in_app" and order_id in n["body"]]

    assert inbox[0]["log"] and inbox[0]["log"][-1]["ok"] is True
    assert in_app and not in_app[0]["read"]
    assert customer.http.post(customer.url(f"/api/v1/notifications/{in_app[0]['id']}/read"),
                              timeout=10).status_code == 204
    stranger = stack.customer()
    assert stranger.http.post(stranger.url(f"/api/v1/notifications/{in_app[0]['id']}/read"),
                              timeout=10).status_code == 404


def _sms_user(stack) -> tuple[Client, str]:  # type: ignore[no-untyped-def]
    phone = f"+9197{uuid.uuid4().int % 10**8:08d}"
    client = stack.user(Role.CUSTOMER, phone=phone)
    _preferences(client, channels={"sms": True, "email": False, "push": False, "in_app": True})
    return client, phone


def _sms_notification(stack, client: Client, event: str) -> dict:  # type: ignore[no-untyped-def]
    return _eventually(lambda: stack.db[notifications.NOTIFICATIONS].find_one(
        {"user_id": client.user_id, "event": event, "channel": "sms", "status": {"$in": ["sent", "failed"]}}),
        timeout=40, what=f"the {event} SMS to finish")


def _achievement(client: Client) -> None:
    """One notification, nothing else in flight for this user."""
    app.send_task("notifications.notify", args=[client.user_id, "achievement_earned", {"achievement": "Regular"},
                                                f"ach-{uuid.uuid4().hex}"])


def test_a_provider_5xx_is_retried_until_it_succeeds(stack) -> None:  # type: ignore[no-untyped-def]
    client, phone = _sms_user(stack)
    requests.post(f"{stack.messaging_url}/_sandbox/control", json={"fail_next": 2, "fail_status": 503}, timeout=10)

    _achievement(client)
    sent = _sms_notification(stack, client, "achievement_earned")

    attempts = list(stack.db[notifications.ATTEMPTS].find({"notification_id": sent["_id"]}))
    assert sent["status"] == "sent"
    assert [a["ok"] for a in sorted(attempts, key=lambda a: a["at_ms"])] == [False, False, True]
    assert len([m for m in _sms_to(stack, phone) if "Regular" in m["message"]]) == 1


def test_a_provider_4xx_is_not_retried_and_is_logged_failed(stack) -> None:  # type: ignore[no-untyped-def]
    client, phone = _sms_user(stack)
    requests.post(f"{stack.messaging_url}/_sandbox/control", json={"fail_next": 1, "fail_status": 400}, timeout=10)

    _achievement(client)
    failed = _sms_notification(stack, client, "achievement_earned")

    assert failed["status"] == "failed" and "400" in failed["response"]
    assert stack.db[notifications.ATTEMPTS].count_documents({"notification_id": failed["_id"]}) == 1
    assert _sms_to(stack, phone) == []


def test_quiet_hours_defer_news_but_not_a_login_code(stack) -> None:  # type: ignore[no-untyped-def]
    client, phone = _sms_user(stack)
    _preferences(client, channels={"sms": True, "email": False, "push": False, "in_app": True},
                 quiet_start="00:00", quiet_end="23:59", timezone="UTC")

    _cod_order(stack, client)
    deferred = _eventually(lambda: stack.db[notifications.NOTIFICATIONS].find_one(
        {"user_id": client.user_id, "event": "order_confirmed", "channel": "sms"}), what="the deferred SMS")
    requests.post(stack.url("/api/v1/auth/2fa/sms"), json={"email": client.email, "password": "x" * 10}, timeout=10)
    app.send_task("notifications.notify", args=[client.user_id, "login_otp", {"code": "424242", "minutes": 5},
                                                f"otp-test-{uuid.uuid4().hex}"])
    otp = _eventually(lambda: [m for m in _sms_to(stack, phone) if "424242" in m["message"]], what="the OTP SMS")

    assert deferred["status"] == "queued" and deferred["due_at_ms"] > time.time() * 1000
    assert otp and not [m for m in _sms_to(stack, phone) if "confirmed" in m["message"]]


def test_a_trigger_and_a_send_that_run_twice_send_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    _preferences(customer, channels={"email": True, "sms": False, "push": False, "in_app": True})
    key = f"dup-{uuid.uuid4().hex}"
    params = {"achievement": "Chai lover"}

    for _ in range(3):
        app.send_task("notifications.notify", args=[customer.user_id, "achievement_earned", params, key])
    email_id = notifications.notification_id(key, "email")
    for _ in range(3):
        app.send_task("notifications.deliver", args=[email_id])
    _eventually(lambda: [m for m in _mail_to(stack, customer.email) if "Chai lover" in m["text"]], what="the mail")
    time.sleep(1.0)

    assert len([m for m in _mail_to(stack, customer.email) if "Chai lover" in m["text"]]) == 1
    assert stack.db[notifications.NOTIFICATIONS].count_documents({"key": key}) == 2  # email + in-app


def test_a_push_to_a_dead_device_token_fails_without_retries(stack, customer) -> None:  # type: ignore[no-untyped-def]
    _preferences(customer, channels={"email": False, "sms": False, "push": True, "in_app": True},
                 push_token="bad-token-of-an-uninstalled-app")

    _cod_order(stack, customer)
    push = _eventually(lambda: stack.db[notifications.NOTIFICATIONS].find_one(
        {"user_id": customer.user_id, "channel": "push", "status": {"$in": ["sent", "failed"]}}), what="the push")

    assert push["status"] == "failed" and "invalid_token" in push["response"]
