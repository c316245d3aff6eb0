"""Accounts: registration, passwords (argon2id) and roles.

Registration always makes a customer; other roles are granted by an admin
(`set_role`) or, for the first admin, by `python -m kirana.accounts`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import threading
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana.clock import now_ms, utcnow
from kirana.config import settings
from kirana.ids import new_id
from kirana.permissions import STORE_ROLES, Role

USERS = "users"

# argon2id with the library's defaults (RFC 9106 low-memory profile): 64 MiB and ~0.1 s of CPU per
# hash or verify. An API process has 8 request threads; unbounded, 8 logins or registrations at once
# took 512 MiB in one process (measured: tests/e2e/test_password_memory.py prints the API's peak).
_argon2 = PasswordHasher()


class _Bounded:
    """The hasher, with at most PASSWORD_HASHES_AT_ONCE hashes or verifies at a time per process."""

    def __init__(self) -> None:
        self._slots: threading.BoundedSemaphore | None = None
        self._lock = threading.Lock()

    def _slot(self) -> threading.BoundedSemaphore:
        if self._slots is None:
            with self._lock:
                if self._slots is None:
                    self._slots = threading.BoundedSemaphore(max(1, settings().password_hashes_at_once))
        return self._slots

    def hash(self, password: str) -> str:
        with self._slot():
            return _argon2.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        with self._slot():
            return _argon2.verify(hashed, password)

    def check_needs_rehash(self, hashed: str) -> bool:
        return _argon2.check_needs_rehash(hashed)


_hasher = _Bounded()
# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _argon2.hash("kirana-no-such-user")

MIN_PASSWORD = 10


class AccountError(Exception):
    pass


class EmailTaken(AccountError):
    pass


class WeakPassword(AccountError):
    pass


class BadCredentials(AccountError):
    """Unknown email or wrong password: deliberately the same error."""


class UnknownUser(AccountError):
    pass


class InvalidRole(AccountError):
    pass


@dataclass(frozen=True)
class User:
    id: str
    email: str
    role: Role
    store_id: str | None
    phone: str | None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(doc["_id"], doc["email"], Role(doc["role"]), doc.get("store_id"), doc.get("phone"))

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "role": str(self.role), "store_id": self.store_id,
                "phone": self.phone}


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD} characters")
    if len(set(password)) < 4:
        raise WeakPassword("a password needs more than a few distinct characters")


def register(db: Database, email: str, password: str, *, phone: str | None = None,
             role: Role = Role.CUSTOMER, store_id: str | None = None) -> User:
    check_password_strength(password)
    if role in STORE_ROLES and not store_id:
        raise InvalidRole(f"{role} needs a store_id")
    doc = {
        "_id": new_id("usr"),
        "email": normalize_email(email),
        "password_hash": _hasher.hash(password),
        "role": str(role),
        "store_id": store_id,
        "phone": phone,
        "created_at": utcnow(),
        "updated_at_ms": now_ms(),
    }
    try:
        db[USERS].insert_one(doc)
    except DuplicateKeyError:
        raise EmailTaken(f"{doc['email']} is already registered") from None
    return User.from_doc(doc)


def authenticate(db: Database, email: str, password: str) -> User:
    doc = db[USERS].find_one({"email": normalize_email(email)})
    try:
        _hasher.verify(doc["password_hash"] if doc else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise BadCredentials("email or password is wrong") from None
    if doc is None:
        raise BadCredentials("email or password is wrong")
    if _hasher.check_needs_rehash(doc["password_hash"]):
        db[USERS].update_one({"_id": doc["_id"]}, {"$set": {"password_hash": _hasher.hash(password)}})
    return User.from_doc(doc)


def find_by_email(db: Database, email: str) -> User | None:
    doc = db[USERS].find_one({"email": normalize_email(email)})
    return None if doc is None else User.from_doc(doc)


def get(db: Database, user_id: str) -> User:
    doc = db[USERS].find_one({"_id": user_id})
    if doc is None:
        raise UnknownUser(user_id)
    return User.from_doc(doc)


def change_password(db: Database, user_id: str, current: str, new: str) -> None:
    user = get(db, user_id)
    authenticate(db, user.email, current)
    check_password_strength(new)
    db[USERS].update_one({"_id": user_id}, {"$set": {"password_hash": _hasher.hash(new), "updated_at_ms": now_ms()}})


def set_role(db: Database, user_id: str, role: Role, store_id: str | None = None) -> User:
    if role in STORE_ROLES and not store_id:
        raise InvalidRole(f"{role} needs a store_id")
    if role not in STORE_ROLES:
        store_id = None
    doc = db[USERS].find_one_and_update(
        {"_id": user_id},
        {"$set": {"role": str(role), "store_id": store_id, "updated_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        raise UnknownUser(user_id)
    return User.from_doc(doc)


def main(argv: list[str] | None = None) -> int:
    """``python -m kirana.accounts create --email E --role admin``: the first admin, from a shell."""
    from kirana import db as dbmod

    parser = argparse.ArgumentParser(prog="python -m kirana.accounts")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create an account with any role")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--store-id")
    create.add_argument("--phone")
    args = parser.parse_args(argv)
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    database = dbmod.database()
    dbmod.ensure_indexes(database)
    try:
        user = register(database, args.email, password, phone=args.phone, role=Role(args.role),
                        store_id=args.store_id)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created {user.role} {user.email} ({user.id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
