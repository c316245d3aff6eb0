"""Each notification provider against its local sandbox, over real sockets.

The SMS/push sandbox (sandbox.messaging) and the SMTP mailbox (sandbox.mailbox) run in this
process, on free ports, once for the module; every test resets them. What is checked is the
`Delivery` a caller gets: ok, retryable or final, and a response without secrets.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from kirana.config import Settings
from kirana.providers import (
    ConsoleProvider,
    Delivery,
    Message,
    PushHttpProvider,
    SmsHttpProvider,
    SmtpProvider,
    provider_for,
)
from sandbox.mailbox import Mailbox
from sandbox.messaging import MessagingConfig, create_app
from stack import servers

SMS_KEY = "providers-suite-sms-key"
PUSH_KEY = "providers-suite-push-key"
SENDER = "Kirana <orders@kirana.local>"
PHONE = "+919812345678"
HINDI_SUBJECT = "आपका ऑर्डर ord_01 पुष्टि हो गया"
HINDI_BODY = "नमस्ते आशा,\nआपका ऑर्डर ₹249.50 का है और जल्द ही पहुँचेगा।"
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def messaging() -> Iterator[str]:
    app = create_app(MessagingConfig(sms_api_key=SMS_KEY, push_server_key=PUSH_KEY))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def _mailbox() -> Iterator[Mailbox]:
    with Mailbox() as box:
        yield box


@pytest.fixture
def mailbox(_mailbox: Mailbox) -> Mailbox:
    _mailbox.reset()
    return _mailbox


@pytest.fixture
def sandbox(messaging: str) -> str:
    requests.post(f"{messaging}/_sandbox/reset", timeout=5).raise_for_status()
    return messaging


@pytest.fixture(autouse=True)
def _no_secrets_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert SMS_KEY not in caplog.text and PUSH_KEY not in caplog.text


def control(url: str, **knobs: Any) -> None:
    requests.post(f"{url}/_sandbox/control", json=knobs, timeout=5).raise_for_status()


def received(url: str, **params: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{url}/_sandbox/messages", params=params, timeout=5).json())


def email(nid: str = "ntf_email_1", to: str = "asha@example.in", subject: str | None = HINDI_SUBJECT,
          body: str = HINDI_BODY) -> Message:
    return Message(nid, "email", to, subject, body, "hi")


def sms_message(nid: str = "ntf_sms_1", to: str = PHONE) -> Message:
    return Message(nid, "sms", to, None, "आपका Kirana लॉगिन कोड 482913 है", "hi")


def push_message(token: str = "tok-device-1", nid: str = "ntf_push_1") -> Message:
    return Message(nid, "push", token, "Order confirmed", "Your order ord_01 is confirmed")


def smtp(box: Mailbox | int, timeout: float = TIMEOUT) -> SmtpProvider:
    port = box.port if isinstance(box, Mailbox) else box
    return SmtpProvider("127.0.0.1", port, SENDER, timeout, local_hostname="providers.test")


def sms(url: str, key: str = SMS_KEY, timeout: float = TIMEOUT) -> SmsHttpProvider:
    return SmsHttpProvider(url, key, "KIRANA", timeout)


def push(url: str, key: str = PUSH_KEY, timeout: float = TIMEOUT) -> PushHttpProvider:
    return PushHttpProvider(url, key, timeout)


def assert_no_secret(delivery: Delivery) -> None:
    assert SMS_KEY not in delivery.response and PUSH_KEY not in delivery.response


def refused_port() -> int:
    """A port nothing listens on."""
    return servers.free_port()


# -- email -----------------------------------------------------------------------------------


def test_a_hindi_email_arrives_intact(mailbox: Mailbox) -> None:
    delivery = smtp(mailbox).send(email())
    assert delivery.ok and not delivery.retryable and delivery.provider == "smtp"
    assert delivery.response.startswith("250 ")
    [mail] = mailbox.wait_for("asha@example.in")
    assert mail["subject"] == HINDI_SUBJECT
    assert mail["text"].rstrip("\n") == HINDI_BODY
    assert mail["message_id"] == "<ntf_email_1@kirana.local>"
    assert mail["from"] == SENDER and mail["to"] == ["asha@example.in"]
    assert mail["mail_from"] == "orders@kirana.local" and mail["content_language"] == "hi"
    raw = mailbox.raw(mail["id"])
    assert raw is not None and raw.isascii()  # MIME-encoded: safe on any relay
    assert b"charset=\"utf-8\"" in raw and b"=?utf-8?" in raw


def test_a_duplicate_email_is_recognisable(mailbox: Mailbox) -> None:
    provider = smtp(mailbox)
    assert provider.send(email("ntf_dup")).ok and provider.send(email("ntf_dup")).ok
    ids = {m["message_id"] for m in mailbox.wait_for("asha@example.in", count=2)}
    assert ids == {"<ntf_dup@kirana.local>"}


def test_a_plain_ascii_email_without_subject(mailbox: Mailbox) -> None:
    assert smtp(mailbox).send(email("ntf_plain", subject=None, body="Your code is 1234\n.\nThanks")).ok
    [mail] = mailbox.wait_for("asha@example.in")
    assert mail["subject"] == "" and mail["text"] == "Your code is 1234\n.\nThanks\n"  # a lone dot survives
    raw = mailbox.raw(mail["id"])
    assert raw is not None and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(("code", "at", "retryable"), [
    (421, "rcpt", True), (421, "data", True), (451, "data", True), (550, "rcpt", False), (550, "data", False),
])
def test_smtp_4xx_is_transient_and_5xx_permanent(mailbox: Mailbox, code: int, at: str, retryable: bool) -> None:
    mailbox.control(1, code, at)
    delivery = smtp(mailbox).send(email())
    assert not delivery.ok and delivery.retryable is retryable
    assert delivery.response.startswith(f"{code} ") and at.upper() in delivery.response
    assert mailbox.find() == []
    assert smtp(mailbox).send(email()).ok  # the fault is spent


def test_smtp_sends_a_threads_emails_over_one_connection(mailbox: Mailbox) -> None:
    provider = smtp(mailbox)
    assert all(provider.send(email(f"ntf_keep{i}")).ok for i in range(3))
    assert smtp(mailbox).send(email("ntf_keep3")).ok  # a provider built again: the same kept connection
    mails = mailbox.wait_for("asha@example.in", count=4)
    assert len({mail["peer"] for mail in mails}) == 1


def test_smtp_replaces_a_connection_the_relay_closed_and_sends_once(mailbox: Mailbox) -> None:
    provider = smtp(mailbox)
    assert provider.send(email("ntf_before")).ok
    mailbox.drop_sessions()  # the relay closes idle clients
    assert provider.send(email("ntf_after")).ok
    time.sleep(0.3)  # a duplicate would have arrived by now
    mails = mailbox.wait_for("asha@example.in", count=2)
    assert len(mails) == 2 and mails[0]["peer"] != mails[1]["peer"]


def test_smtp_connection_refused_is_retryable() -> None:
    delivery = smtp(refused_port()).send(email())
    assert not delivery.ok and delivery.retryable
    assert "connection error" in delivery.response and "Refused" in delivery.response


def test_smtp_silent_server_times_out_retryably() -> None:
    with socket.socket() as listener:  # accepts the connection (backlog) but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        started = time.monotonic()
        delivery = smtp(listener.getsockname()[1], timeout=0.3).send(email())
    assert not delivery.ok and delivery.retryable and "timeout" in delivery.response
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("to", ["not-an-address", "asha@example.in\r\nRCPT TO:<eve@evil.in>", "आशा@example.in", ""])
def test_smtp_refuses_a_bad_address_without_sending(mailbox: Mailbox, to: str) -> None:
    delivery = smtp(mailbox).send(email(to=to))
    assert not delivery.ok and not delivery.retryable and "invalid recipient" in delivery.response
    assert mailbox.find() == []


def test_smtp_refuses_a_header_injection_in_the_subject(mailbox: Mailbox) -> None:
    delivery = smtp(mailbox).send(email(subject="Hi\r\nBcc: eve@evil.in"))
    assert not delivery.ok and not delivery.retryable
    assert mailbox.find() == []


# -- SMS -------------------------------------------------------------------------------------


def test_sms_ok(sandbox: str) -> None:
    delivery = sms(sandbox).send(sms_message())
    assert delivery.ok and not delivery.retryable and delivery.provider == "sms_http"
    [msg] = received(sandbox, to=PHONE, channel="sms")
    assert (msg["message"], msg["sender"], msg["reference"]) == ("आपका Kirana लॉगिन कोड 482913 है", "KIRANA",
                                                                "ntf_sms_1")
    assert delivery.response.startswith("200 ") and msg["id"] in delivery.response
    assert_no_secret(delivery)


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (500, True), (429, True), (400, False)])
def test_sms_failures(sandbox: str, status: int, retryable: bool) -> None:
    control(sandbox, fail_next=1, fail_status=status)
    delivery = sms(sandbox).send(sms_message())
    assert delivery == Delivery(ok=False, retryable=retryable, response=delivery.response, provider="sms_http")
    assert delivery.response.startswith(f"{status} ")
    assert received(sandbox) == []


def test_sms_wrong_key_is_final_and_not_echoed(sandbox: str) -> None:
    delivery = sms(sandbox, key=PUSH_KEY).send(sms_message())
    assert not delivery.ok and not delivery.retryable and delivery.response.startswith("401 ")
    assert_no_secret(delivery)
    assert PUSH_KEY not in repr(sms(sandbox, key=PUSH_KEY))


def test_sms_timeout_is_retryable(sandbox: str) -> None:
    control(sandbox, delay_s=0.5)
    delivery = sms(sandbox, timeout=0.2).send(sms_message())
    assert not delivery.ok and delivery.retryable and "timeout" in delivery.response
    # The sandbox, like a real provider, may have sent it all the same: the reference tells.
    assert [m["reference"] for m in received(sandbox)] == ["ntf_sms_1"]


def test_sms_connection_refused_is_retryable() -> None:
    delivery = sms(f"http://127.0.0.1:{refused_port()}").send(sms_message())
    assert not delivery.ok and delivery.retryable and "connection error" in delivery.response


def test_sms_bad_number_is_final_without_sending(sandbox: str) -> None:
    delivery = sms(sandbox).send(sms_message(to="9812345678"))
    assert not delivery.ok and not delivery.retryable
    assert received(sandbox) == []


# -- push ------------------------------------------------------------------------------------


def test_push_ok(sandbox: str) -> None:
    delivery = push(sandbox).send(push_message())
    assert delivery.ok and delivery.provider == "push_http" and "message_id=0:" in delivery.response
    [msg] = received(sandbox, to="tok-device-1", channel="push")
    assert (msg["title"], msg["body"], msg["data"]) == ("Order confirmed", "Your order ord_01 is confirmed",
                                                        {"notification_id": "ntf_push_1"})
    assert_no_secret(delivery)


@pytest.mark.parametrize(("token", "error"), [("bad-device", "NotRegistered"),
                                              ("invalid-device", "InvalidRegistration")])
def test_push_to_a_dead_token_is_final_and_says_invalid_token(sandbox: str, token: str, error: str) -> None:
    delivery = push(sandbox).send(push_message(token))
    assert not delivery.ok and not delivery.retryable
    assert "invalid_token" in delivery.response and error in delivery.response


def test_push_unavailable_is_retryable(sandbox: str) -> None:
    delivery = push(sandbox).send(push_message("unavailable-device"))
    assert not delivery.ok and delivery.retryable and "Unavailable" in delivery.response
    assert "invalid_token" not in delivery.response


def test_push_http_failures(sandbox: str) -> None:
    control(sandbox, fail_next=1, fail_status=503)
    delivery = push(sandbox).send(push_message())
    assert not delivery.ok and delivery.retryable and delivery.response.startswith("503")
    wrong = push(sandbox, key=SMS_KEY).send(push_message())
    assert not wrong.ok and not wrong.retryable and wrong.response.startswith("401")
    assert_no_secret(wrong)
    refused = push(f"http://127.0.0.1:{refused_port()}").send(push_message())
    assert not refused.ok and refused.retryable


# -- console and choosing --------------------------------------------------------------------


def test_console_logs_the_message(caplog: pytest.LogCaptureFixture) -> None:
    delivery = ConsoleProvider().send(email())
    assert delivery.ok and delivery.provider == "console"
    record = next(r for r in caplog.records if r.name == "kirana.providers" and r.levelno == logging.WARNING)
    assert record.getMessage() == f"[console email] to asha@example.in: {HINDI_SUBJECT} {HINDI_BODY}"


def test_provider_for_follows_the_settings() -> None:
    real = Settings()
    assert isinstance(provider_for("email", real), SmtpProvider)
    assert isinstance(provider_for("sms", real), SmsHttpProvider)
    assert isinstance(provider_for("push", real), PushHttpProvider)
    console = replace(real, email_provider="console", sms_provider="console", push_provider="console")
    for channel in ("email", "sms", "push"):
        assert isinstance(provider_for(channel, console), ConsoleProvider)
    with pytest.raises(ValueError, match="channel"):
        provider_for("in_app", real)
    with pytest.raises(ValueError, match="unknown sms provider"):
        provider_for("sms", replace(real, sms_provider="twilio"))
    with pytest.raises(ValueError, match="sender"):
        provider_for("email", replace(real, smtp_sender="nobody"))


def test_provider_for_works_end_to_end(sandbox: str, mailbox: Mailbox) -> None:
    cfg = replace(Settings(), smtp_port=mailbox.port, sms_base_url=sandbox, push_base_url=sandbox,
                  sms_api_key=SMS_KEY, push_server_key=PUSH_KEY, notify_timeout_s=TIMEOUT)
    assert provider_for("email", cfg).send(email()).ok
    assert provider_for("sms", cfg).send(sms_message()).ok
    assert provider_for("push", cfg).send(push_message()).ok
    assert mailbox.wait_for("asha@example.in") and len(received(sandbox)) == 2
