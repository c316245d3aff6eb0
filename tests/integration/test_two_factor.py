"""Two-factor authentication against the real store and Redis: TOTP, recovery codes, SMS codes."""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest

from kirana import two_factor
from kirana.two_factor import AlreadyEnabled, InvalidCode, NotEnrolled, RateLimited

# Mid-step (steps are 30 s), so "now" and "now ± 30" are distinct steps.
T0 = 1_800_000_015.0


def _user() -> str:
    return f"usr_{uuid.uuid4().hex[:12]}"


def _enrol(database, user_id: str, at: float = T0) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    enrolment = two_factor.begin_enrolment(database, user_id, f"{user_id}@example.com", issuer="Kirana", now=at)
    codes = two_factor.confirm_enrolment(database, user_id, pyotp.TOTP(enrolment.secret).at(at), now=at)
    return enrolment.secret, codes


def _race(n: int, attempt: Callable[[], None]) -> list[bool]:
    """Run `attempt` in n threads released together; which ones passed."""
    barrier = threading.Barrier(n)

    def one(_: int) -> bool:
        barrier.wait()
        try:
            attempt()
        except InvalidCode:
            return False
        return True

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


# --- enrolment ----------------------------------------------------------------


def test_enrolment_gives_a_uri_with_issuer_and_account_and_a_png(database) -> None:  # type: ignore[no-untyped-def]
    enrolment = two_factor.begin_enrolment(database, "u1", "asha@example.com", issuer="Kirana Ops")

    uri = urlparse(enrolment.provisioning_uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Kirana Ops:asha@example.com"
    query = parse_qs(uri.query)
    assert query["issuer"] == ["Kirana Ops"] and query["secret"] == [enrolment.secret]
    assert enrolment.qr_png.startswith(b"\x89PNG")
    prefix = "data:image/png;base64,"
    assert enrolment.qr_data_uri.startswith(prefix)
    assert base64.b64decode(enrolment.qr_data_uri[len(prefix):]) == enrolment.qr_png
    assert not two_factor.is_enabled(database, "u1")
    doc = database[two_factor.TWO_FACTOR].find_one({"_id": "u1"})
    assert doc["pending_secret"] == enrolment.secret and doc["enabled"] is False
    assert doc["created_at"].tzinfo is not None and isinstance(doc["updated_at_ms"], int)


def test_a_new_enrolment_replaces_the_pending_secret(database) -> None:  # type: ignore[no-untyped-def]
    first = two_factor.begin_enrolment(database, "u1", "a", issuer="Kirana", now=T0)
    second = two_factor.begin_enrolment(database, "u1", "a", issuer="Kirana", now=T0)

    assert first.secret != second.secret
    with pytest.raises(InvalidCode):
        two_factor.confirm_enrolment(database, "u1", pyotp.TOTP(first.secret).at(T0), now=T0)
    assert two_factor.confirm_enrolment(database, "u1", pyotp.TOTP(second.secret).at(T0), now=T0)
    assert database[two_factor.TWO_FACTOR].count_documents({}) == 1


def test_confirming_with_a_wrong_code_fails_and_with_the_right_one_enables(database) -> None:  # type: ignore[no-untyped-def]
    enrolment = two_factor.begin_enrolment(database, "u1", "a", issuer="Kirana", now=T0)
    right = pyotp.TOTP(enrolment.secret).at(T0)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    with pytest.raises(InvalidCode):
        two_factor.confirm_enrolment(database, "u1", wrong, now=T0)
    with pytest.raises(InvalidCode):
        two_factor.confirm_enrolment(database, "u1", "not-a-code", now=T0)
    assert not two_factor.is_enabled(database, "u1")

    codes = two_factor.confirm_enrolment(database, "u1", right, now=T0)

    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9a-f]{5}-[0-9a-f]{5}", code) for code in codes)
    assert two_factor.is_enabled(database, "u1")
    assert two_factor.recovery_codes_left(database, "u1") == 10
    doc = database[two_factor.TWO_FACTOR].find_one({"_id": "u1"})
    assert doc["secret"] == enrolment.secret and "pending_secret" not in doc
    assert doc["last_step"] == int(T0) // 30
    stored = " ".join(str(d) for d in database[two_factor.RECOVERY_CODES].find({"user_id": "u1"}))
    assert not any(code in stored or code.replace("-", "") in stored for code in codes)


def test_an_enabled_user_cannot_enrol_or_confirm_again(database) -> None:  # type: ignore[no-untyped-def]
    secret, _ = _enrol(database, "u1")

    with pytest.raises(AlreadyEnabled):
        two_factor.begin_enrolment(database, "u1", "a", issuer="Kirana")
    with pytest.raises(AlreadyEnabled):
        two_factor.confirm_enrolment(database, "u1", pyotp.TOTP(secret).at(T0 + 30), now=T0 + 30)
    assert database[two_factor.TWO_FACTOR].find_one({"_id": "u1"})["secret"] == secret


def test_confirming_without_enrolment_is_not_enrolled(database) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotEnrolled):
        two_factor.confirm_enrolment(database, "nobody", "123456")


# --- login codes --------------------------------------------------------------


def test_a_login_code_is_accepted_once_then_the_next_step_and_not_older_ones(database) -> None:  # type: ignore[no-untyped-def]
    secret, _ = _enrol(database, "u1")
    totp = pyotp.TOTP(secret)
    at = T0 + 300

    two_factor.verify_totp(database, "u1", totp.at(at), now=at)
    with pytest.raises(InvalidCode):  # replay
        two_factor.verify_totp(database, "u1", totp.at(at), now=at)
    with pytest.raises(InvalidCode):  # the previous step is in the window but older than the one used
        two_factor.verify_totp(database, "u1", totp.at(at - 30), now=at)

    two_factor.verify_totp(database, "u1", totp.at(at + 30), now=at + 30)
    with pytest.raises(InvalidCode):  # two steps old: outside the window
        two_factor.verify_totp(database, "u1", totp.at(at + 30), now=at + 90)
    assert database[two_factor.TWO_FACTOR].find_one({"_id": "u1"})["last_step"] == int(at + 30) // 30


def test_a_code_two_steps_old_is_refused_even_if_unused(database) -> None:  # type: ignore[no-untyped-def]
    secret, _ = _enrol(database, "u1")
    at = T0 + 300

    with pytest.raises(InvalidCode):
        two_factor.verify_totp(database, "u1", pyotp.TOTP(secret).at(at - 60), now=at)
    with pytest.raises(InvalidCode):
        two_factor.verify_totp(database, "u1", pyotp.TOTP(secret).at(at + 60), now=at)
    two_factor.verify_totp(database, "u1", pyotp.TOTP(secret).at(at), now=at)


@pytest.mark.parametrize("offset", [-30, 30])
def test_codes_of_the_previous_and_next_step_are_accepted(database, offset: int) -> None:  # type: ignore[no-untyped-def]
    secret, _ = _enrol(database, "u1")
    at = T0 + 300

    two_factor.verify_totp(database, "u1", pyotp.TOTP(secret).at(at + offset), now=at)

    assert database[two_factor.TWO_FACTOR].find_one({"_id": "u1"})["last_step"] == int(at + offset) // 30


def test_a_code_may_be_typed_with_a_space(database) -> None:  # type: ignore[no-untyped-def]
    secret, _ = _enrol(database, "u1")
    code = pyotp.TOTP(secret).at(T0 + 60)

    two_factor.verify_totp(database, "u1", f"{code[:3]} {code[3:]}", now=T0 + 60)


def test_login_codes_need_an_enabled_user(database) -> None:  # type: ignore[no-untyped-def]
    enrolment = two_factor.begin_enrolment(database, "pending", "a", issuer="Kirana", now=T0)

    with pytest.raises(NotEnrolled):
        two_factor.verify_totp(database, "nobody", "123456")
    with pytest.raises(NotEnrolled):
        two_factor.verify_totp(database, "pending", pyotp.TOTP(enrolment.secret).at(T0), now=T0)


def test_racing_requests_with_one_code_let_exactly_one_in(database) -> None:  # type: ignore[no-untyped-def]
    secret, _ = _enrol(database, "u1")
    at = T0 + 300
    code = pyotp.TOTP(secret).at(at)

    results = _race(8, lambda: two_factor.verify_totp(database, "u1", code, now=at))

    assert sum(results) == 1


# --- recovery codes -----------------------------------------------------------


def test_a_recovery_code_works_once_and_only_for_its_user(database) -> None:  # type: ignore[no-untyped-def]
    _, mine = _enrol(database, "u1")
    _, theirs = _enrol(database, "u2")

    with pytest.raises(InvalidCode):
        two_factor.use_recovery_code(database, "u1", theirs[0])
    two_factor.use_recovery_code(database, "u1", mine[0])
    with pytest.raises(InvalidCode):
        two_factor.use_recovery_code(database, "u1", mine[0])
    with pytest.raises(InvalidCode):
        two_factor.use_recovery_code(database, "u2", mine[1])
    with pytest.raises(InvalidCode):
        two_factor.use_recovery_code(database, "u1", "00000-00000")

    assert two_factor.recovery_codes_left(database, "u1") == 9
    assert two_factor.recovery_codes_left(database, "u2") == 10
    two_factor.use_recovery_code(database, "u2", theirs[0])


def test_recovery_codes_left_counts_down_and_codes_are_forgiving_about_case_and_dashes(database) -> None:  # type: ignore[no-untyped-def]
    _, codes = _enrol(database, "u1")

    two_factor.use_recovery_code(database, "u1", codes[0].upper())
    two_factor.use_recovery_code(database, "u1", codes[1].replace("-", ""))
    two_factor.use_recovery_code(database, "u1", f" {codes[2].replace('-', ' ')} ")

    assert two_factor.recovery_codes_left(database, "u1") == 7


def test_racing_requests_with_one_recovery_code_let_exactly_one_in(database) -> None:  # type: ignore[no-untyped-def]
    _, codes = _enrol(database, "u1")

    results = _race(8, lambda: two_factor.use_recovery_code(database, "u1", codes[3]))

    assert sum(results) == 1
    assert two_factor.recovery_codes_left(database, "u1") == 9


def test_regenerating_recovery_codes_retires_the_old_ones(database) -> None:  # type: ignore[no-untyped-def]
    _, old = _enrol(database, "u1")
    two_factor.use_recovery_code(database, "u1", old[0])

    new = two_factor.regenerate_recovery_codes(database, "u1")

    assert two_factor.recovery_codes_left(database, "u1") == 10
    with pytest.raises(InvalidCode):
        two_factor.use_recovery_code(database, "u1", old[1])
    two_factor.use_recovery_code(database, "u1", new[0])
    with pytest.raises(NotEnrolled):
        two_factor.regenerate_recovery_codes(database, "nobody")


def test_disabling_removes_the_secret_and_the_recovery_codes(database) -> None:  # type: ignore[no-untyped-def]
    _, codes = _enrol(database, "u1")
    _enrol(database, "u2")

    assert two_factor.disable(database, "u1") is True
    assert two_factor.disable(database, "u1") is False

    assert not two_factor.is_enabled(database, "u1")
    assert two_factor.recovery_codes_left(database, "u1") == 0
    with pytest.raises(InvalidCode):
        two_factor.use_recovery_code(database, "u1", codes[0])
    assert two_factor.recovery_codes_left(database, "u2") == 10
    _enrol(database, "u1", at=T0 + 600)  # and may enrol afresh
    assert two_factor.is_enabled(database, "u1")


# --- SMS codes ----------------------------------------------------------------

LIMITS = {"per_window": 3, "window_s": 600, "ttl_s": 300}


@pytest.fixture
def sms_user(redis_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    user_id = _user()
    yield user_id
    redis_client.delete(f"kirana:sms-otp:{user_id}")


def test_sms_codes_are_issued_up_to_the_limit_then_rate_limited(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    codes = [two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS) for _ in range(3)]

    with pytest.raises(RateLimited) as caught:
        two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS)

    assert all(re.fullmatch(r"\d{6}", code) for code in codes)
    assert 0 < caught.value.retry_after_s <= 600
    assert 0 < redis_client.ttl(f"kirana:sms-otp:{sms_user}") <= 600
    # Another user has a window of their own.
    other = _user()
    try:
        two_factor.issue_sms_code(database, redis_client, other, **LIMITS)
    finally:
        redis_client.delete(f"kirana:sms-otp:{other}")


def test_a_new_sms_code_replaces_the_earlier_one(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    first = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)
    second = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0 + 1)

    assert database[two_factor.SMS_CODES].count_documents({"_id": sms_user}) == 1
    if first != second:
        with pytest.raises(InvalidCode):
            two_factor.verify_sms_code(database, sms_user, first, now=T0 + 2)
    two_factor.verify_sms_code(database, sms_user, second, now=T0 + 2)


def test_the_right_sms_code_works_once(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)

    stored = database[two_factor.SMS_CODES].find_one({"_id": sms_user})
    assert code not in str(stored) and stored["attempts"] == 0
    assert stored["expires_at_ms"] == int(T0 * 1000) + 300_000

    two_factor.verify_sms_code(database, sms_user, code, now=T0 + 10)
    with pytest.raises(InvalidCode):
        two_factor.verify_sms_code(database, sms_user, code, now=T0 + 11)
    assert database[two_factor.SMS_CODES].count_documents({"_id": sms_user}) == 0


def test_wrong_sms_codes_count_attempts_and_burn_the_code(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    for attempt in range(1, 4):
        with pytest.raises(InvalidCode):
            two_factor.verify_sms_code(database, sms_user, wrong, now=T0 + 1, max_attempts=3)
        if attempt < 3:
            assert database[two_factor.SMS_CODES].find_one({"_id": sms_user})["attempts"] == attempt

    assert database[two_factor.SMS_CODES].count_documents({"_id": sms_user}) == 0
    with pytest.raises(InvalidCode):
        two_factor.verify_sms_code(database, sms_user, code, now=T0 + 2, max_attempts=3)


def test_the_right_sms_code_works_after_fewer_wrong_tries(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(4):
        with pytest.raises(InvalidCode):
            two_factor.verify_sms_code(database, sms_user, wrong, now=T0 + 1)

    two_factor.verify_sms_code(database, sms_user, code, now=T0 + 2)


def test_an_expired_sms_code_is_refused(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)

    with pytest.raises(InvalidCode):
        two_factor.verify_sms_code(database, sms_user, code, now=T0 + 300)

    assert database[two_factor.SMS_CODES].count_documents({"_id": sms_user}) == 0


def test_sms_codes_are_per_user_and_none_issued_is_refused(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)

    with pytest.raises(InvalidCode):
        two_factor.verify_sms_code(database, "someone-else", code, now=T0 + 1)
    two_factor.verify_sms_code(database, sms_user, code, now=T0 + 1)


def test_racing_requests_with_the_right_sms_code_let_exactly_one_in(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)

    results = _race(8, lambda: two_factor.verify_sms_code(database, sms_user, code, now=T0 + 1, max_attempts=8))

    assert sum(results) == 1


def test_racing_wrong_guesses_cannot_exceed_the_attempts(database, redis_client, sms_user) -> None:  # type: ignore[no-untyped-def]
    code = two_factor.issue_sms_code(database, redis_client, sms_user, **LIMITS, now=T0)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    results = _race(8, lambda: two_factor.verify_sms_code(database, sms_user, wrong, now=T0 + 1, max_attempts=5))

    assert sum(results) == 0
    assert database[two_factor.SMS_CODES].count_documents({"_id": sms_user}) == 0
    with pytest.raises(InvalidCode):
        two_factor.verify_sms_code(database, sms_user, code, now=T0 + 2)
