"""Sessions and tokens: short-lived access tokens, revocable refresh tokens.

A login opens a session. The access token (a JWT, HS256) names its session,
and every request checks that the session is still open, so logging out, a
password change or a role change revokes access tokens at once, not when
they expire. The token's authority is the session's, not its own: the role,
store and second-factor state come from the session (written at login from
the account), and the session must belong to the token's subject, so a token
signed with a leaked secret cannot raise a customer to admin. The refresh
token is opaque, stored only as a hash, and rotated on every use; every
rotated-away token of a session is remembered (SPENT), and presenting any of
them (a stolen copy, however many rotations later) closes the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana.accounts import User
from kirana.clock import now_ms, utcnow
from kirana.ids import new_id
from kirana.permissions import Principal, Role

SESSIONS = "sessions"
# The hashes of rotated-away refresh tokens, each naming its session: the whole token family.
SPENT = "refresh_tokens_spent"
ALGORITHM = "HS256"


class TokenError(Exception):
    """A token that is missing, malformed, expired or revoked."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str

    def view(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": "Bearer", "expires_in": self.expires_in}


def _hash(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _access(user: User, session_id: str, two_factor: bool, *, secret: str, ttl_s: int, now: float) -> str:
    claims = {
        "sub": user.id, "sid": session_id, "role": str(user.role), "store_id": user.store_id,
        "mfa": two_factor, "iat": int(now), "exp": int(now) + ttl_s, "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def open_session(db: Database, user: User, *, two_factor: bool, secret: str, access_ttl_s: int,
                 refresh_ttl_s: int, now: float | None = None) -> Tokens:
    now = time.time() if now is None else now
    session_id = new_id("ses")
    refresh = secrets.token_urlsafe(32)
    db[SESSIONS].insert_one({
        "_id": session_id, "user_id": user.id, "role": str(user.role), "store_id": user.store_id,
        "two_factor": two_factor, "refresh_hash": _hash(refresh),
        "expires_at_ms": int((now + refresh_ttl_s) * 1000), "created_at": utcnow(), "updated_at_ms": now_ms(),
    })
    access = _access(user, session_id, two_factor, secret=secret, ttl_s=access_ttl_s, now=now)
    return Tokens(access, refresh, access_ttl_s, session_id)


def authenticate(db: Database, token: str, *, secret: str) -> Principal:
    """The principal an access token stands for, if its session is still open."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "sid"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("the access token has expired; refresh it") from None
    except jwt.PyJWTError:
        raise TokenError("the access token is not valid") from None
    if claims.get("typ") != "access":
        raise TokenError("not an access token")
    session = db[SESSIONS].find_one({"_id": claims["sid"], "revoked_at_ms": {"$exists": False}},
                                    {"user_id": 1, "role": 1, "store_id": 1, "two_factor": 1})
    if session is None or "role" not in session:
        raise TokenError("the session has ended; log in again")
    if session["user_id"] != claims["sub"]:
        raise TokenError("the access token is not valid")
    # Authority from the session, never from the claims (which only a leaked secret could change).
    return Principal(session["user_id"], Role(session["role"]), session["_id"], session.get("store_id"),
                     bool(session.get("two_factor")))


def refresh(db: Database, refresh_token: str, load_user: Any, *, secret: str, access_ttl_s: int,
            now: float | None = None) -> Tokens:
    """Rotate a refresh token; `load_user(user_id)` gives the account's current role."""
    now = time.time() if now is None else now
    old = _hash(refresh_token)
    new = secrets.token_urlsafe(32)
    session = db[SESSIONS].find_one_and_update(
        {"refresh_hash": old, "revoked_at_ms": {"$exists": False}, "expires_at_ms": {"$gt": int(now * 1000)}},
        # The hash of the new token, never the token: the next refresh looks it up by its hash
        # (storing the token itself ended every session at its second refresh), and the
        # database must hold nothing a client could present.
        {"$set": {"refresh_hash": _hash(new), "updated_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if session is None:
        # A refresh token of the session's family that was already rotated away: someone kept a copy.
        reused = db[SPENT].find_one({"_id": old}, {"session_id": 1})
        if reused is not None:
            revoke(db, reused["session_id"])
        raise TokenError("the refresh token is not valid; log in again")
    # Remembered for as long as the session could last. A crash before this write forgets one
    # token (its reuse is then refused, not detected); nothing a client holds becomes valid.
    with contextlib.suppress(DuplicateKeyError):
        db[SPENT].insert_one({"_id": old, "session_id": session["_id"], "expires_at_ms": session["expires_at_ms"]})
    user = load_user(session["user_id"])
    access = _access(user, session["_id"], session["two_factor"], secret=secret, ttl_s=access_ttl_s, now=now)
    return Tokens(access, new, access_ttl_s, session["_id"])


def revoke(db: Database, session_id: str) -> bool:
    done = db[SESSIONS].update_one({"_id": session_id, "revoked_at_ms": {"$exists": False}},
                                   {"$set": {"revoked_at_ms": now_ms()}})
    return done.modified_count == 1


def revoke_all(db: Database, user_id: str) -> int:
    done = db[SESSIONS].update_many({"user_id": user_id, "revoked_at_ms": {"$exists": False}},
                                    {"$set": {"revoked_at_ms": now_ms()}})
    return done.modified_count
