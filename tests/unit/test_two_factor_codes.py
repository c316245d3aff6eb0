"""Two-factor code rules that need no store: roles, the TOTP window, recovery code hashing."""

from __future__ import annotations

import re

import pyotp
import pytest

from kirana import two_factor
from kirana.two_factor import InvalidCode

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0  # mid-step
STEP = int(NOW) // 30


@pytest.mark.parametrize(("roles", "required"), [
    ({"ops"}, True), ({"customer", "admin"}, True), (["store_owner"], True),
    ({"customer"}, False), (set(), False),
])
def test_staff_roles_require_two_factor(roles: set[str], required: bool) -> None:
    assert two_factor.required_for(roles) is required


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_the_window_is_one_step_either_side(offset: int) -> None:
    code = pyotp.TOTP(SECRET).at(NOW, counter_offset=offset)
    assert two_factor._matching_step(SECRET, code, NOW) == STEP + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_codes_outside_the_window_are_refused(offset: int) -> None:
    code = pyotp.TOTP(SECRET).at(NOW, counter_offset=offset)
    if code in {pyotp.TOTP(SECRET).at(NOW, counter_offset=o) for o in (-1, 0, 1)}:
        pytest.skip("the code repeats within the window by chance")
    with pytest.raises(InvalidCode):
        two_factor._matching_step(SECRET, code, NOW)


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", ""])
def test_malformed_totp_codes_are_invalid(typed: str) -> None:
    with pytest.raises(InvalidCode):
        two_factor._normalize_totp(typed)


def test_recovery_codes_are_ten_hex_digits_in_two_groups() -> None:
    assert re.fullmatch(r"[0-9a-f]{5}-[0-9a-f]{5}", two_factor._new_recovery_code())


def test_recovery_hashes_ignore_case_spaces_and_dashes_but_not_the_user() -> None:
    base = two_factor._recovery_hash("u1", "ab12c-3de45")
    assert two_factor._recovery_hash("u1", "AB12C 3DE45") == base
    assert two_factor._recovery_hash("u1", "ab12c3de45") == base
    assert two_factor._recovery_hash("u2", "ab12c-3de45") != base
