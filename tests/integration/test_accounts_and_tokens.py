"""Accounts and sessions against the real MongoDB wire protocol."""

from __future__ import annotations

import time

import pytest

from kirana import accounts, tokens
from kirana.permissions import Role

SECRET = "test-secret-test-secret-test-secret-0123"


def _open(database, user, **kw):  # type: ignore[no-untyped-def]
    return tokens.open_session(database, user, two_factor=False, secret=SECRET, access_ttl_s=60,
                               refresh_ttl_s=3600, **kw)


def test_passwords_are_stored_as_argon2id_and_checked(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, " Asha@Example.IN ", "a long passphrase")

    stored = database[accounts.USERS].find_one({"_id": user.id})
    assert stored["email"] == "asha@example.in"
    assert stored["password_hash"].startswith("$argon2id$") and "a long passphrase" not in stored["password_hash"]
    assert accounts.authenticate(database, "ASHA@example.in", "a long passphrase").id == user.id
    with pytest.raises(accounts.BadCredentials):
        accounts.authenticate(database, "asha@example.in", "wrong passphrase")
    with pytest.raises(accounts.BadCredentials):
        accounts.authenticate(database, "nobody@example.in", "a long passphrase")


def test_an_email_registers_once_and_weak_passwords_are_refused(database) -> None:  # type: ignore[no-untyped-def]
    accounts.register(database, "ravi@example.in", "a long passphrase")
    with pytest.raises(accounts.EmailTaken):
        accounts.register(database, "RAVI@example.in", "another long one")
    with pytest.raises(accounts.WeakPassword):
        accounts.register(database, "x@example.in", "aaaaaaaaaaaa")


def test_store_roles_need_a_store(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, "s@example.in", "a long passphrase")
    with pytest.raises(accounts.InvalidRole):
        accounts.set_role(database, user.id, Role.STORE_STAFF)
    assert accounts.set_role(database, user.id, Role.STORE_STAFF, "store-1").store_id == "store-1"
    assert accounts.set_role(database, user.id, Role.RIDER, "store-1").store_id is None


def test_an_access_token_names_its_user_role_and_session(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, "t@example.in", "a long passphrase")
    issued = _open(database, user)

    me = tokens.authenticate(database, issued.access_token, secret=SECRET)

    assert (me.user_id, me.role, me.session_id, me.two_factor) == (user.id, Role.CUSTOMER, issued.session_id, False)


def test_expired_revoked_and_forged_tokens_are_refused(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, "e@example.in", "a long passphrase")
    expired = _open(database, user, now=time.time() - 120)
    live = _open(database, user)

    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.authenticate(database, expired.access_token, secret=SECRET)
    with pytest.raises(tokens.TokenError):
        tokens.authenticate(database, live.access_token, secret=SECRET + "x")
    tokens.revoke(database, live.session_id)
    with pytest.raises(tokens.TokenError, match="ended"):
        tokens.authenticate(database, live.access_token, secret=SECRET)


def test_refresh_rotates_and_reuse_of_an_old_refresh_token_ends_the_session(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, "r@example.in", "a long passphrase")
    issued = _open(database, user)

    def load(uid: str) -> accounts.User:
        return accounts.get(database, uid)

    rotated = tokens.refresh(database, issued.refresh_token, load, secret=SECRET, access_ttl_s=60)
    with pytest.raises(tokens.TokenError):
        tokens.refresh(database, issued.refresh_token, load, secret=SECRET, access_ttl_s=60)
    with pytest.raises(tokens.TokenError):
        tokens.authenticate(database, rotated.access_token, secret=SECRET)


def test_every_rotation_stores_only_the_new_tokens_hash_so_the_next_refresh_finds_it(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, "rr@example.in", "a long passphrase")
    issued = _open(database, user)
    held = [issued.refresh_token]

    for _ in range(5):
        held.append(tokens.refresh(database, held[-1], lambda uid: accounts.get(database, uid), secret=SECRET,
                                   access_ttl_s=60).refresh_token)

    session = database["sessions"].find_one({"_id": issued.session_id})
    assert session["refresh_hash"] == tokens._hash(held[-1])
    assert not set(held) & {v for v in session.values() if isinstance(v, str)}
    # Every rotated-away token is remembered by its hash only, naming its session.
    spent = {d["_id"]: d["session_id"] for d in database[tokens.SPENT].find({"session_id": issued.session_id})}
    assert spent == {tokens._hash(t): issued.session_id for t in held[:-1]}


def test_any_earlier_token_of_the_family_ends_the_session_not_only_the_last_one(database) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 6: a thief who rotates a stolen token twice does not keep the session."""
    user = accounts.register(database, "thief@example.in", "a long passphrase")
    issued = _open(database, user)
    load = lambda uid: accounts.get(database, uid)  # noqa: E731
    stolen = issued.refresh_token
    thief = tokens.refresh(database, stolen, load, secret=SECRET, access_ttl_s=60)
    thief = tokens.refresh(database, thief.refresh_token, load, secret=SECRET, access_ttl_s=60)

    with pytest.raises(tokens.TokenError):  # the owner's copy, two rotations back
        tokens.refresh(database, stolen, load, secret=SECRET, access_ttl_s=60)

    with pytest.raises(tokens.TokenError):
        tokens.authenticate(database, thief.access_token, secret=SECRET)
    with pytest.raises(tokens.TokenError):
        tokens.refresh(database, thief.refresh_token, load, secret=SECRET, access_ttl_s=60)


def test_the_principal_comes_from_the_session_not_from_the_tokens_claims(database) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 4: a token signed with a leaked secret cannot raise its holder or borrow a session."""
    import jwt

    customer = accounts.register(database, "cust@example.in", "a long passphrase")
    other = accounts.register(database, "other@example.in", "a long passphrase")
    issued = _open(database, customer)
    claims = jwt.decode(issued.access_token, SECRET, algorithms=["HS256"])

    forged = jwt.encode({**claims, "role": "admin", "store_id": "store_x", "mfa": True}, SECRET, algorithm="HS256")
    principal = tokens.authenticate(database, forged, secret=SECRET)
    assert (principal.role, principal.store_id, principal.two_factor) == ("customer", None, False)

    borrowed = jwt.encode({**claims, "sub": other.id}, SECRET, algorithm="HS256")
    with pytest.raises(tokens.TokenError, match="not valid"):
        tokens.authenticate(database, borrowed, secret=SECRET)


def test_revoke_all_ends_every_session_of_a_user(database) -> None:  # type: ignore[no-untyped-def]
    user = accounts.register(database, "a@example.in", "a long passphrase")
    sessions = [_open(database, user) for _ in range(3)]

    assert tokens.revoke_all(database, user.id) == 3
    for issued in sessions:
        with pytest.raises(tokens.TokenError):
            tokens.authenticate(database, issued.access_token, secret=SECRET)
