"""Two-factor authentication: TOTP authenticator apps, recovery codes, SMS codes.

Staff (`REQUIRED_ROLES`) enrol an authenticator app: `begin_enrolment` keeps a
pending secret and gives the QR code, `confirm_enrolment` checks a first code,
turns two-factor on and hands back ten recovery codes, once. A login then
passes `verify_totp`, or spends a recovery code, or an SMS code.

Every one-time rule is a guarded single-document write, so two requests
racing with the same code cannot both pass:
- a TOTP code is accepted only for a time step above the last one accepted
  (`last_step`), set in the same `find_one_and_update` that checks it;
- a recovery code is its own document, marked used by a filter that wants it
  unused;
- an SMS code is one document per user, deleted by the filter that matches
  it; every guess first takes one of its `max_attempts` by `$inc`.

Only hashes of recovery and SMS codes are stored. The TOTP secret is stored
as is: the server must compute codes from it.

Callers still limit how often a user may try (as for passwords): a six-digit
code is guessable by someone allowed unlimited tries.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyotp
import redis
import segno
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana import throttle

TWO_FACTOR = "two_factor"
RECOVERY_CODES = "recovery_codes"
SMS_CODES = "sms_codes"

REQUIRED_ROLES = frozenset({"ops", "admin", "store_owner"})

RECOVERY_CODE_COUNT = 10
TOTP_DIGITS = 6
SMS_CODE_DIGITS = 6
# Codes of the step before and after the current one are accepted too, for
# clocks that drift and codes typed as they change.
VALID_WINDOW = 1

class TwoFactorError(Exception):
    """Base of the two-factor errors the API turns into problem responses."""


class InvalidCode(TwoFactorError):
    def __init__(self, message: str = "the code is not valid") -> None:
        super().__init__(message)


class NotEnrolled(TwoFactorError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"two-factor authentication is not set up for user {user_id!r}")
        self.user_id = user_id


class AlreadyEnabled(TwoFactorError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"two-factor authentication is already on for user {user_id!r}")
        self.user_id = user_id


class RateLimited(TwoFactorError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many codes requested; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Enrolment:
    """What the user needs to add Kirana to an authenticator app."""

    secret: str
    provisioning_uri: str
    qr_png: bytes
    qr_data_uri: str


def required_for(roles: Iterable[str]) -> bool:
    """Whether a user with these roles must use two-factor authentication."""
    return not REQUIRED_ROLES.isdisjoint(roles)


# --- time -------------------------------------------------------------------


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _ms(now: float) -> int:
    return int(now * 1000)


def _utc(now: float) -> dt.datetime:
    # Datetimes are written on insert only; updates carry integer milliseconds.
    return dt.datetime.fromtimestamp(now, dt.UTC)


# --- TOTP -------------------------------------------------------------------


def _normalize_totp(code: str) -> str:
    digits = code.replace(" ", "").strip()
    if len(digits) != TOTP_DIGITS or not digits.isdigit():
        raise InvalidCode()
    return digits


def _matching_step(secret: str, code: str, now: float) -> int:
    """The time step, within the valid window around `now`, whose code is `code`.

    If (by chance) two steps of the window share the code, the later is taken.
    """
    totp = pyotp.TOTP(secret)
    current = int(now) // totp.interval
    matches = [
        step
        for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1)
        if hmac.compare_digest(totp.generate_otp(step), code)
    ]
    if not matches:
        raise InvalidCode()
    return max(matches)


ENROLMENT_TOKENS = "enrolment_tokens"


def issue_enrolment_token(db: Database, user_id: str, *, issued_by: str, ttl_s: int,
                          now: float | None = None) -> str:
    """A one-time token an admin hands a privileged user (out of band) to enrol their authenticator.

    Without it, a password alone would let whoever holds it enrol their own device on an ops or
    admin account that has none yet. One per user: a new one replaces the last. Stored hashed.
    """
    at = _now(now)
    token = secrets.token_urlsafe(24)
    db[ENROLMENT_TOKENS].update_one(
        {"_id": user_id},
        {"$set": {"token_hash": hashlib.sha256(token.encode()).hexdigest(), "issued_by": issued_by,
                  "expires_at_ms": _ms(at) + ttl_s * 1000, "updated_at_ms": _ms(at)}},
        upsert=True,
    )
    return token


def take_enrolment_token(db: Database, user_id: str, token: str, *, now: float | None = None) -> bool:
    """Use up `user_id`'s enrolment token if `token` is it and it has not expired."""
    found = db[ENROLMENT_TOKENS].find_one_and_delete({
        "_id": user_id, "token_hash": hashlib.sha256(token.encode()).hexdigest(),
        "expires_at_ms": {"$gt": _ms(_now(now))}})
    return found is not None


def begin_enrolment(db: Database, user_id: str, account_name: str, *, issuer: str,
                    now: float | None = None) -> Enrolment:
    """Keep a new pending secret for `user_id` and return how to enrol it.

    A pending secret from an earlier, unconfirmed attempt is replaced.
    """
    at = _now(now)
    secret = pyotp.random_base32()
    try:
        db[TWO_FACTOR].update_one(
            {"_id": user_id, "enabled": {"$ne": True}},
            {
                "$set": {"pending_secret": secret, "updated_at_ms": _ms(at)},
                "$setOnInsert": {"enabled": False, "created_at": _utc(at)},
            },
            upsert=True,
        )
    except DuplicateKeyError:  # the document exists and is enabled
        raise AlreadyEnabled(user_id) from None
    uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=issuer)
    buf = io.BytesIO()
    segno.make(uri).save(buf, kind="png", scale=5)
    png = buf.getvalue()
    return Enrolment(
        secret=secret,
        provisioning_uri=uri,
        qr_png=png,
        qr_data_uri="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
    )


def confirm_enrolment(db: Database, user_id: str, code: str, *, now: float | None = None) -> list[str]:
    """Turn two-factor on if `code` comes from the pending secret; return the recovery codes.

    The plain recovery codes are returned only here; the store keeps hashes.
    """
    at = _now(now)
    doc = db[TWO_FACTOR].find_one({"_id": user_id})
    if doc is None:
        raise NotEnrolled(user_id)
    if doc.get("enabled"):
        raise AlreadyEnabled(user_id)
    pending = doc.get("pending_secret")
    if not pending:
        raise NotEnrolled(user_id)
    step = _matching_step(pending, _normalize_totp(code), at)
    enabled = db[TWO_FACTOR].find_one_and_update(
        # The secret in the filter: a newer begin_enrolment, or a racing
        # confirmation that already won, leaves nothing to match.
        {"_id": user_id, "pending_secret": pending},
        {
            "$set": {"secret": pending, "enabled": True, "last_step": step,
                     "enabled_at_ms": _ms(at), "updated_at_ms": _ms(at)},
            "$unset": {"pending_secret": ""},
        },
    )
    if enabled is None:
        raise InvalidCode("the enrolment changed meanwhile; start again")
    return _replace_recovery_codes(db, user_id, at)


def is_enabled(db: Database, user_id: str) -> bool:
    return db[TWO_FACTOR].count_documents({"_id": user_id, "enabled": True}, limit=1) > 0


def verify_totp(db: Database, user_id: str, code: str, *, now: float | None = None) -> None:
    """Accept `code` once: raise InvalidCode if wrong, replayed or older than one already used."""
    at = _now(now)
    doc = db[TWO_FACTOR].find_one({"_id": user_id, "enabled": True}, {"secret": 1, "last_step": 1})
    if doc is None:
        raise NotEnrolled(user_id)
    step = _matching_step(doc["secret"], _normalize_totp(code), at)
    if step <= doc["last_step"]:
        raise InvalidCode("the code was already used")
    accepted = db[TWO_FACTOR].find_one_and_update(
        {"_id": user_id, "enabled": True, "last_step": {"$lt": step}},
        {"$set": {"last_step": step, "last_used_at_ms": _ms(at), "updated_at_ms": _ms(at)}},
    )
    if accepted is None:  # another request used this code (or a later one) meanwhile
        raise InvalidCode("the code was already used")


def disable(db: Database, user_id: str) -> bool:
    """Turn two-factor off (or drop a pending enrolment); whether there was anything."""
    removed = db[TWO_FACTOR].delete_one({"_id": user_id}).deleted_count
    db[RECOVERY_CODES].delete_many({"user_id": user_id})
    return bool(removed)


# --- recovery codes -----------------------------------------------------------


def _normalize_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch not in " -")


def _recovery_hash(user_id: str, code: str) -> str:
    # The codes carry 40 random bits each, so a fast hash suffices; the user
    # id in it keeps one user's code from being anyone else's.
    return hashlib.sha256(f"{user_id}:{_normalize_recovery(code)}".encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"


def _replace_recovery_codes(db: Database, user_id: str, at: float) -> list[str]:
    codes: list[str] = []
    while len(codes) < RECOVERY_CODE_COUNT:
        code = _new_recovery_code()
        if code not in codes:
            codes.append(code)
    db[RECOVERY_CODES].delete_many({"user_id": user_id})
    db[RECOVERY_CODES].insert_many(
        [
            {"_id": _recovery_hash(user_id, code), "user_id": user_id, "created_at": _utc(at),
             "created_at_ms": _ms(at)}
            for code in codes
        ],
        ordered=False,
    )
    return codes


def regenerate_recovery_codes(db: Database, user_id: str, *, now: float | None = None) -> list[str]:
    """New recovery codes for an enabled user; the earlier ones stop working."""
    if not is_enabled(db, user_id):
        raise NotEnrolled(user_id)
    return _replace_recovery_codes(db, user_id, _now(now))


def use_recovery_code(db: Database, user_id: str, code: str, *, now: float | None = None) -> None:
    """Spend one recovery code of `user_id`; InvalidCode if unknown or already used."""
    at = _now(now)
    used = db[RECOVERY_CODES].find_one_and_update(
        {"_id": _recovery_hash(user_id, code), "user_id": user_id, "used_at_ms": {"$exists": False}},
        {"$set": {"used_at_ms": _ms(at)}},
    )
    if used is None:
        raise InvalidCode()


def recovery_codes_left(db: Database, user_id: str) -> int:
    return db[RECOVERY_CODES].count_documents({"user_id": user_id, "used_at_ms": {"$exists": False}})


# --- SMS codes --------------------------------------------------------------


def _sms_key(user_id: str) -> str:
    return f"kirana:sms-otp:{user_id}"


def _sms_hash(salt: str, user_id: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{user_id}:{code}".encode()).hexdigest()


def issue_sms_code(db: Database, r: redis.Redis, user_id: str, *, per_window: int, window_s: int, ttl_s: int,
                   now: float | None = None) -> str:
    """A new SMS code for `user_id`, replacing any earlier one; the caller sends it.

    At most `per_window` codes per user in `window_s` (a fixed window in
    Redis); beyond that RateLimited says when to try again.
    """
    at = _now(now)
    count, ttl = throttle.count_in_window(r, _sms_key(user_id), window_s)
    if count > per_window:
        raise RateLimited(max(ttl, 1))
    code = f"{secrets.randbelow(10**SMS_CODE_DIGITS):0{SMS_CODE_DIGITS}d}"
    salt = secrets.token_hex(16)
    db[SMS_CODES].update_one(
        {"_id": user_id},
        {"$set": {"code_hash": _sms_hash(salt, user_id, code), "salt": salt, "attempts": 0,
                  "issued_at_ms": _ms(at), "expires_at_ms": _ms(at) + ttl_s * 1000, "updated_at_ms": _ms(at)}},
        upsert=True,
    )
    return code


OTP_REF_PREFIX = "kirana:otp"


def stash_sms_code(r: redis.Redis, code: str, *, ttl_s: int) -> str:
    """Keep `code` for its sender under a random reference, for as long as it is valid.

    The notification task is given the reference, never the code: task arguments are shown by
    Flower and kept by the outbox and dead letters. The reference is useless once the code expires.
    """
    ref = secrets.token_urlsafe(16)
    r.set(f"{OTP_REF_PREFIX}:{ref}", code, ex=ttl_s)
    return ref


def stashed_sms_code(r: redis.Redis, ref: str) -> str | None:
    """The code a reference stands for, or None once it expired or was forgotten."""
    raw = r.get(f"{OTP_REF_PREFIX}:{ref}")
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


def forget_stashed_sms_code(r: redis.Redis, ref: str) -> None:
    r.delete(f"{OTP_REF_PREFIX}:{ref}")


def verify_sms_code(db: Database, user_id: str, code: str, *, now: float | None = None,
                    max_attempts: int = 5) -> None:
    """Accept the user's current SMS code once; InvalidCode if wrong, expired, used or burned.

    Each try takes one of the code's `max_attempts` before the comparison,
    so racing guesses cannot exceed it; the try that uses the last one
    without matching deletes the code.
    """
    at_ms = _ms(_now(now))
    codes = db[SMS_CODES]
    doc: dict[str, Any] | None = codes.find_one_and_update(
        {"_id": user_id, "expires_at_ms": {"$gt": at_ms}, "attempts": {"$lt": max_attempts}},
        {"$inc": {"attempts": 1}, "$set": {"updated_at_ms": at_ms}},
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        # Expired or burned codes are of no further use.
        codes.delete_one({"_id": user_id, "expires_at_ms": {"$lte": at_ms}})
        codes.delete_one({"_id": user_id, "attempts": {"$gte": max_attempts}})
        raise InvalidCode()
    digits = code.replace(" ", "").strip()
    if hmac.compare_digest(_sms_hash(doc["salt"], user_id, digits), doc["code_hash"]):
        used = codes.find_one_and_delete(
            {"_id": user_id, "code_hash": doc["code_hash"], "expires_at_ms": {"$gt": at_ms}}
        )
        if used is not None:
            return
        raise InvalidCode("the code was already used")
    if doc["attempts"] >= max_attempts:
        codes.delete_one({"_id": user_id, "code_hash": doc["code_hash"]})
    raise InvalidCode()
