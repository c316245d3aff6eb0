"""Two-factor over HTTP: enrol with an authenticator app, log in with codes, SMS fallback."""

from __future__ import annotations

import re
import time
import uuid

import pyotp
import pytest
import requests

from kirana import notifications
from kirana.permissions import Role
from tests.harness import PASSWORD, Client

pytestmark = pytest.mark.e2e


def _login(stack, email: str, **extra: str) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(stack.url("/api/v1/auth/login"), json={"email": email, "password": PASSWORD, **extra},
                         timeout=10)


def _enrol(client: Client) -> tuple[pyotp.TOTP, list[str]]:
    enrolment = client.http.post(client.url("/api/v1/auth/2fa/enroll"), timeout=10).json()
    assert enrolment["qr_png"].startswith("data:image/png;base64,")
    assert "issuer=Kirana" in enrolment["provisioning_uri"]
    totp = pyotp.TOTP(enrolment["secret"])
    wrong = client.http.post(client.url("/api/v1/auth/2fa/confirm"), json={"code": "000000"}, timeout=10)
    assert wrong.status_code == 422
    # A code from the previous step: it leaves the current one unused for the login.
    confirmed = client.http.post(client.url("/api/v1/auth/2fa/confirm"),
                                 json={"code": totp.at(time.time() - 30)}, timeout=10)
    assert confirmed.status_code == 200, confirmed.text
    return totp, confirmed.json()["recovery_codes"]


def test_enrol_then_log_in_with_a_code_that_works_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    totp, recovery = _enrol(customer)
    assert len(set(recovery)) == 10

    without = _login(stack, customer.email)
    wrong = _login(stack, customer.email, otp="123456" if totp.now() != "123456" else "654321")
    code = totp.now()
    right = _login(stack, customer.email, otp=code)
    replayed = _login(stack, customer.email, otp=code)

    assert without.status_code == 401 and without.json()["type"] == "/problems/two-factor-required"
    assert wrong.status_code == 401 and wrong.json()["type"] == "/problems/invalid-two-factor-code"
    assert right.status_code == 200 and right.json()["two_factor"] is True
    assert replayed.status_code == 401, "a code already accepted must not work twice"


def test_a_recovery_code_works_once(stack, customer) -> None:  # type: ignore[no-untyped-def]
    _, recovery = _enrol(customer)

    first = _login(stack, customer.email, recovery_code=recovery[0])
    second = _login(stack, customer.email, recovery_code=recovery[0])
    other = _login(stack, customer.email, recovery_code=recovery[1])

    assert (first.status_code, second.status_code, other.status_code) == (200, 401, 200)


def test_a_customer_may_remove_two_factor_with_a_code_but_staff_may_not(stack, customer) -> None:  # type: ignore[no-untyped-def]
    totp, _ = _enrol(customer)
    removed = customer.http.delete(customer.url("/api/v1/auth/2fa"), json={"password": PASSWORD, "code": totp.now()},
                                   timeout=10)
    owner = stack.user(Role.STORE_OWNER, store_id="store-blr-indiranagar")
    refused = owner.http.delete(owner.url("/api/v1/auth/2fa"), timeout=10,
                                json={"password": PASSWORD, "code": pyotp.TOTP(owner.totp_secret).now()})

    assert removed.status_code == 204
    assert _login(stack, customer.email).status_code == 200
    assert refused.status_code == 409


def _sms_in_sandbox(stack, phone: str, timeout: float = 20) -> str:  # type: ignore[no-untyped-def]
    """The code from the newest SMS the gateway sandbox received for `phone`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = requests.get(f"{stack.messaging_url}/_sandbox/messages", params={"to": phone, "channel": "sms"},
                            timeout=10).json()
        found = [m for text in (x["message"] for x in sent) for m in re.findall(r"login code is (\d{6})", text)]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no SMS to {phone} reached the gateway sandbox")


def test_an_sms_code_is_sent_through_the_notifications_queue_and_logs_in_once(stack) -> None:  # type: ignore[no-untyped-def]
    phone = f"+9198{uuid.uuid4().int % 10**8:08d}"
    client = stack.user(Role.CUSTOMER, phone=phone, two_factor=True)

    asked = requests.post(stack.url("/api/v1/auth/2fa/sms"), json={"email": client.email, "password": PASSWORD},
                          timeout=10)
    code = _sms_in_sandbox(stack, phone)
    first = _login(stack, client.email, sms_code=code)
    again = _login(stack, client.email, sms_code=code)

    assert asked.status_code == 202
    assert (first.status_code, again.status_code) == (200, 401)
    sent = stack.db[notifications.NOTIFICATIONS].find_one({"user_id": client.user_id, "event": "login_otp"})
    assert sent["status"] == "sent" and code not in sent["body"], "a sent code must not stay in the database"


def test_sms_codes_are_rate_limited(stack) -> None:  # type: ignore[no-untyped-def]
    client = stack.user(Role.CUSTOMER, phone="+919800000001", two_factor=True)
    body = {"email": client.email, "password": PASSWORD}

    answers = [requests.post(stack.url("/api/v1/auth/2fa/sms"), json=body, timeout=10)
               for _ in range(stack.cfg.sms_otp_per_window + 1)]

    assert [a.status_code for a in answers] == [202] * stack.cfg.sms_otp_per_window + [429]
    assert int(answers[-1].headers["Retry-After"]) > 0


def test_the_sms_code_travels_to_the_worker_by_reference_never_in_the_tasks_arguments(stack) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 12: task arguments are shown by Flower and kept by the outbox and dead letters."""
    import base64
    import json

    from kirana import redis_conn, two_factor

    phone = f"+9197{uuid.uuid4().int % 10**8:08d}"
    client = stack.user(Role.CUSTOMER, phone=phone, two_factor=True)
    r = redis_conn.client()
    worker = stack.workers["notifications"]
    worker.stop()  # the message waits in its queue, where Flower would show its arguments
    try:
        asked = requests.post(stack.url("/api/v1/auth/2fa/sms"), json={"email": client.email, "password": PASSWORD},
                              timeout=10)
        assert asked.status_code == 202
        waiting = [json.loads(m) for m in r.lrange("notifications", 0, -1)]
        mine = [m for m in waiting if m["headers"]["task"] == "notifications.notify"
                and json.loads(base64.b64decode(m["body"]))[0][0] == client.user_id]
        assert len(mine) == 1
        args = json.loads(base64.b64decode(mine[0]["body"]))[0]
        assert set(args[2]) == {"code_ref", "minutes"}
        code = two_factor.stashed_sms_code(r, args[2]["code_ref"])
        assert code is not None and code not in json.dumps(mine[0])
    finally:
        worker.start()
    assert _sms_in_sandbox(stack, phone) == code
    assert two_factor.stashed_sms_code(r, args[2]["code_ref"]) is None  # forgotten once stored with its SMS
    assert _login(stack, client.email, sms_code=code).status_code == 200


def test_removing_two_factor_needs_the_password_too_and_failures_count_toward_the_lockout(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 9: a stolen access token and a code alone do not strip the second factor."""
    totp, _ = _enrol(customer)
    url = customer.url("/api/v1/auth/2fa")
    code_only = customer.http.delete(url, json={"code": totp.now()}, timeout=10)
    wrong = [customer.http.delete(url, json={"password": "not the password!", "code": totp.now()}, timeout=10)
             for _ in range(stack.cfg.login_max_failures_pair)]
    locked = customer.http.delete(url, json={"password": PASSWORD, "code": totp.now()}, timeout=10)
    login = _login(stack, customer.email, otp=totp.now())

    assert code_only.status_code == 422  # the password is required
    assert [w.status_code for w in wrong] == [403] * stack.cfg.login_max_failures_pair
    assert locked.status_code == 429 and login.status_code == 429  # counted like failed logins
    assert stack.db["two_factor"].find_one({"_id": customer.user_id, "enabled": True}) is not None
