"""The SMS/push sandbox (python -m sandbox.messaging) and the SMTP mailbox (python -m sandbox.mailbox),
each a real process on free ports, driven with requests and smtplib.

One process of each serves the module (started side by side); every test resets the ones it uses. Both must stop
cleanly (exit 0) on SIGTERM, and the messaging sandbox must never log its keys.
"""

from __future__ import annotations

import os
import smtplib
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.mailbox import Mailbox
from stack import servers

ROOT = Path(__file__).resolve().parents[2]
SMS_KEY = "suite-sms-key"
PUSH_KEY = "suite-push-key"
PHONE = "+919876543210"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class MailboxProcess:
    smtp_port: int
    url: str


@dataclass
class Sandboxes:
    messaging_url: str
    mailbox: MailboxProcess


def _in_parallel(*calls: Callable[[], object]) -> None:
    with ThreadPoolExecutor(len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """Both processes, started side by side (each takes a second or two to import Flask)."""
    logs = tmp_path_factory.mktemp("sandboxes")
    port, smtp_port, http_port = servers.free_port(), servers.free_port(), servers.free_port()
    messaging = servers.Server("messaging-sandbox", [sys.executable, "-m", "sandbox.messaging", "--port", str(port)],
                               port, env=_env(SMS_API_KEY=SMS_KEY, PUSH_SERVER_KEY=PUSH_KEY),
                               log=logs / "messaging.log", cwd=ROOT)
    mailbox = servers.Server("mailbox", [sys.executable, "-m", "sandbox.mailbox", "--port", str(smtp_port),
                                         "--http-port", str(http_port)],
                             smtp_port, env=_env(), log=logs / "mailbox.log", cwd=ROOT)
    try:
        _in_parallel(messaging.start, mailbox.start)
        url, mailbox_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{http_port}"
        servers.wait_http(f"{url}/_sandbox/healthz")
        servers.wait_http(f"{mailbox_url}/healthz")
        yield Sandboxes(url, MailboxProcess(smtp_port, mailbox_url))
    finally:
        _in_parallel(messaging.stop, mailbox.stop)
    for server, log in ((messaging, logs / "messaging.log"), (mailbox, logs / "mailbox.log")):
        # SIGTERM is a clean stop
        assert server.proc is not None and server.proc.returncode == 0, log.read_text()
        assert "stopped" in log.read_text()
    text = (logs / "messaging.log").read_text()
    assert SMS_KEY not in text and PUSH_KEY not in text


@pytest.fixture
def messaging_url(sandboxes: Sandboxes) -> str:
    requests.post(f"{sandboxes.messaging_url}/_sandbox/reset", timeout=5).raise_for_status()
    return sandboxes.messaging_url


@pytest.fixture
def mailbox(sandboxes: Sandboxes) -> MailboxProcess:
    requests.post(f"{sandboxes.mailbox.url}/reset", timeout=5).raise_for_status()
    return sandboxes.mailbox


def sms(url: str, key: str = SMS_KEY, **body: Any) -> requests.Response:
    payload = {"sender": "KIRANA", "to": PHONE, "message": "hello", "reference": "ntf_1", **body}
    return requests.post(f"{url}/api/v5/sms", json=payload, headers={"authkey": key}, timeout=5)


def push(url: str, token: str = "tok-1", key: str = PUSH_KEY) -> requests.Response:
    payload = {"to": token, "notification": {"title": "Order", "body": "confirmed"},
               "data": {"notification_id": "ntf_2"}}
    return requests.post(f"{url}/fcm/send", json=payload, headers={"Authorization": f"key={key}"}, timeout=5)


def received(url: str, **params: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{url}/_sandbox/messages", params=params, timeout=5)
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def control(url: str, **knobs: Any) -> requests.Response:
    return requests.post(f"{url}/_sandbox/control", json=knobs, timeout=5)


# -- SMS and push ----------------------------------------------------------------------------


def test_health(messaging_url: str) -> None:
    assert requests.get(f"{messaging_url}/_sandbox/healthz", timeout=5).json() == {"status": "ok"}


def test_sms_is_recorded_and_answered_like_msg91(messaging_url: str) -> None:
    resp = sms(messaging_url, message="आपका कोड 123456 है", reference="ntf_sms_1")
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["type"] == "success" and len(answer["message"]) == 24
    [msg] = received(messaging_url, to=PHONE, channel="sms")
    assert msg["id"] == answer["message"]
    assert (msg["to"], msg["message"], msg["sender"], msg["reference"]) == (PHONE, "आपका कोड 123456 है", "KIRANA",
                                                                           "ntf_sms_1")
    assert abs(msg["received_at"] - time.time()) < 30
    assert received(messaging_url, to="+910000000000") == []
    assert received(messaging_url, channel="push") == []


def test_sms_wants_the_authkey(messaging_url: str) -> None:
    assert sms(messaging_url, key="wrong").status_code == 401
    resp = requests.post(f"{messaging_url}/api/v5/sms", json={"to": PHONE, "message": "x"}, timeout=5)
    assert resp.status_code == 401 and resp.json()["type"] == "error"
    assert received(messaging_url) == []


def test_sms_refuses_a_malformed_body(messaging_url: str) -> None:
    for bad in ({"to": "not-a-phone"}, {"message": ""}, {"sender": 7}):
        resp = sms(messaging_url, **bad)
        assert resp.status_code == 400 and resp.json()["type"] == "error", bad
    resp = requests.post(f"{messaging_url}/api/v5/sms", data=b"[1]", headers={"authkey": SMS_KEY}, timeout=5)
    assert resp.status_code == 400
    assert received(messaging_url) == []


def test_push_is_recorded_and_answered_like_fcm(messaging_url: str) -> None:
    resp = push(messaging_url)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert (answer["success"], answer["failure"], answer["canonical_ids"]) == (1, 0, 0)
    message_id = answer["results"][0]["message_id"]
    assert message_id.startswith("0:")
    [msg] = received(messaging_url, to="tok-1", channel="push")
    assert msg["id"] == message_id and msg["title"] == "Order" and msg["body"] == "confirmed"
    assert msg["data"] == {"notification_id": "ntf_2"} and msg["error"] is None


def test_push_to_dead_tokens(messaging_url: str) -> None:
    for token, error in (("bad-1", "NotRegistered"), ("invalid-1", "InvalidRegistration"),
                         ("unavailable-1", "Unavailable")):
        answer = push(messaging_url, token).json()
        assert (answer["success"], answer["failure"]) == (0, 1)
        assert answer["results"] == [{"error": error}]
        [msg] = received(messaging_url, to=token)
        assert msg["error"] == error


def test_push_wants_the_server_key(messaging_url: str) -> None:
    assert push(messaging_url, key="wrong").status_code == 401
    assert push(messaging_url, key=SMS_KEY).status_code == 401
    assert received(messaging_url) == []


def test_fail_next_applies_to_both_endpoints_then_clears(messaging_url: str) -> None:
    knobs = control(messaging_url, fail_next=3, fail_status=503)
    assert knobs.status_code == 200 and knobs.json() == {"fail_next": 3, "fail_status": 503, "delay_s": 0.0}
    assert sms(messaging_url).status_code == 503
    assert push(messaging_url).status_code == 503
    assert sms(messaging_url).status_code == 503
    assert sms(messaging_url).status_code == 200
    assert push(messaging_url).status_code == 200
    assert [m["channel"] for m in received(messaging_url)] == ["sms", "push"]  # failed requests are not recorded
    stats = requests.get(f"{messaging_url}/_sandbox/stats", timeout=5).json()
    assert stats["failed"] == 3 and stats["sms_requests"] == 3 and stats["push_requests"] == 2


def test_fail_status_400(messaging_url: str) -> None:
    control(messaging_url, fail_next=1, fail_status=400).raise_for_status()
    resp = sms(messaging_url)
    assert resp.status_code == 400 and resp.json()["type"] == "error"
    assert sms(messaging_url).status_code == 200


def test_delay_holds_every_answer_until_reset(messaging_url: str) -> None:
    control(messaging_url, delay_s=0.4).raise_for_status()
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        requests.post(f"{messaging_url}/api/v5/sms", json={"sender": "K", "to": PHONE, "message": "slow"},
                      headers={"authkey": SMS_KEY}, timeout=0.15)
    assert len(received(messaging_url)) == 1  # recorded before the wait: a timed-out send may have gone
    assert push(messaging_url).status_code == 200
    assert time.monotonic() - started >= 0.4
    requests.post(f"{messaging_url}/_sandbox/reset", timeout=5).raise_for_status()
    started = time.monotonic()
    assert sms(messaging_url).status_code == 200
    assert time.monotonic() - started < 0.3


def test_control_refuses_nonsense(messaging_url: str) -> None:
    for bad in ({"fail_next": -1}, {"fail_next": "2"}, {"fail_status": 302}, {"delay_s": -1},
                {"delay_s": 1000}, {"unknown": 1}):
        assert control(messaging_url, **bad).status_code == 400, bad
    assert requests.get(f"{messaging_url}/_sandbox/control", timeout=5).json()["fail_next"] == 0
    assert requests.get(f"{messaging_url}/_sandbox/messages?channel=fax", timeout=5).status_code == 400


def test_reset_forgets_everything(messaging_url: str) -> None:
    sms(messaging_url).raise_for_status()
    control(messaging_url, fail_next=5).raise_for_status()
    requests.post(f"{messaging_url}/_sandbox/reset", timeout=5).raise_for_status()
    assert received(messaging_url) == []
    assert requests.get(f"{messaging_url}/_sandbox/control", timeout=5).json()["fail_next"] == 0


# -- the mailbox -----------------------------------------------------------------------------


def hindi_mail(to: str = "asha@example.in") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Kirana <orders@kirana.local>"
    mail["To"] = to
    mail["Subject"] = "आपका ऑर्डर पुष्टि हो गया"
    mail["Message-ID"] = "<ntf_mail_1@kirana.local>"
    mail.set_content("नमस्ते आशा,\nआपका ऑर्डर ₹120.00 का है।", charset="utf-8", cte="base64")
    return mail


def mails(box: MailboxProcess, to: str | None = None) -> list[dict[str, Any]]:
    resp = requests.get(f"{box.url}/messages", params={"to": to} if to else {}, timeout=5)
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def test_mailbox_keeps_parsed_hindi_mail(mailbox: MailboxProcess) -> None:
    with smtplib.SMTP("127.0.0.1", mailbox.smtp_port, local_hostname="suite.local", timeout=5) as smtp:
        smtp.send_message(hindi_mail())
    [mail] = mails(mailbox, "Asha@Example.in")  # matched without regard to case
    assert mail["subject"] == "आपका ऑर्डर पुष्टि हो गया"
    assert mail["text"].rstrip("\n") == "नमस्ते आशा,\nआपका ऑर्डर ₹120.00 का है।"
    assert mail["message_id"] == "<ntf_mail_1@kirana.local>"
    assert mail["from"] == "Kirana <orders@kirana.local>" and mail["to"] == ["asha@example.in"]
    assert mail["mail_from"] == "orders@kirana.local" and mail["rcpt_tos"] == ["asha@example.in"]
    assert mails(mailbox, "someone@else.in") == []
    raw = requests.get(f"{mailbox.url}/messages/{mail['id']}/raw", timeout=5)
    assert raw.status_code == 200 and b"=?utf-8?" in raw.content and b"Message-ID" in raw.content


def test_mailbox_answers_421_then_550(mailbox: MailboxProcess) -> None:
    resp = requests.post(f"{mailbox.url}/control", json={"fail_next": 1, "code": 421}, timeout=5)
    assert resp.json() == {"fail_next": 1, "code": 421, "at": "rcpt"}
    with smtplib.SMTP("127.0.0.1", mailbox.smtp_port, local_hostname="suite.local", timeout=5) as smtp, \
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.send_message(hindi_mail())
    assert refused.value.recipients["asha@example.in"][0] == 421
    requests.post(f"{mailbox.url}/control", json={"fail_next": 1, "code": 550, "at": "data"},
                  timeout=5).raise_for_status()
    with smtplib.SMTP("127.0.0.1", mailbox.smtp_port, local_hostname="suite.local", timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as data_refused:
            smtp.send_message(hindi_mail())
        assert data_refused.value.smtp_code == 550
        smtp.send_message(hindi_mail())  # the knob is spent
    assert len(mails(mailbox)) == 1


def test_mailbox_control_and_reset(mailbox: MailboxProcess) -> None:
    for bad in ({"fail_next": 1, "code": 250}, {"fail_next": -1}, {"at": "helo"}, {"other": 1}):
        assert requests.post(f"{mailbox.url}/control", json=bad, timeout=5).status_code == 400, bad
    requests.post(f"{mailbox.url}/control", json={"fail_next": 3, "code": 550}, timeout=5).raise_for_status()
    requests.post(f"{mailbox.url}/reset", timeout=5).raise_for_status()
    assert requests.get(f"{mailbox.url}/control", timeout=5).json()["fail_next"] == 0
    with smtplib.SMTP("127.0.0.1", mailbox.smtp_port, local_hostname="suite.local", timeout=5) as smtp:
        smtp.send_message(hindi_mail("ravi@example.in"))
    assert [m["rcpt_tos"] for m in mails(mailbox)] == [["ravi@example.in"]]
    requests.post(f"{mailbox.url}/reset", timeout=5).raise_for_status()
    assert mails(mailbox) == []


def test_mailbox_in_process() -> None:
    with Mailbox() as box:
        assert box.port > 0 and box.http_port is None
        with smtplib.SMTP("127.0.0.1", box.port, local_hostname="suite.local", timeout=5) as smtp:
            smtp.send_message(hindi_mail())
        [mail] = box.wait_for("asha@example.in")
        assert mail["subject"] == "आपका ऑर्डर पुष्टि हो गया"
        assert box.messages == [mail]
        port = box.port
    assert not servers.port_open("127.0.0.1", port)
