"""Access control over HTTP: tokens, the permission matrix on every route, resource access."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
import requests

from api import create_app
from api.security import PUBLIC, declared_permission
from kirana import accounts, tokens
from kirana import db as collections
from kirana.permissions import MATRIX, TWO_FACTOR_REQUIRED, Role
from kirana.seed import STORES
from tests.harness import PASSWORD, Client, eventually

pytestmark = pytest.mark.e2e

STORE_A, STORE_B = STORES[0]["_id"], STORES[1]["_id"]


def _routes() -> list[tuple[str, str, str]]:
    """(method, path with sample arguments, permission) for every route of the app."""
    app = create_app()
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: f"sample-{m.group(1)}", rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((method, path, declared_permission(rule.endpoint)))
    return found


ROUTES = _routes()


@pytest.fixture(scope="module")
def signed_in(stack) -> dict[Role, Client]:  # type: ignore[no-untyped-def]
    store = {Role.STORE_OWNER: STORE_A, Role.STORE_STAFF: STORE_A}
    return {role: stack.user(role, store_id=store.get(role)) for role in Role}


@pytest.mark.parametrize(("method", "path", "permission"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_enforces_the_matrix_for_every_role(stack, signed_in, method, path, permission) -> None:  # type: ignore[no-untyped-def]
    assert permission is not None, f"{method} {path} declares no permission"
    anonymous = requests.request(method, stack.url(path), json={}, timeout=10)
    if permission == PUBLIC:
        assert anonymous.status_code not in {401, 403}
        return
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    for role, shared in signed_in.items():
        # Logging out would end the shared session: use a session of its own.
        client = stack.user(role, store_id=shared.tokens["user"]["store_id"]) if path.endswith("/logout") else shared
        resp = client.http.request(method, stack.url(path), json={}, timeout=10)
        if role in MATRIX[permission]:
            assert resp.status_code not in {401, 403}, (role, resp.text)
        else:
            assert resp.status_code == 403, (role, resp.status_code)
            assert resp.headers["Content-Type"] == "application/problem+json"


def test_a_route_without_a_declaration_is_refused() -> None:
    app = create_app()
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "secret")

    resp = app.test_client().get("/api/v1/forgotten")

    assert resp.status_code == 403
    assert "declares no permission" in resp.get_json()["detail"]


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_a_missing_or_bad_token_is_401(stack, header) -> None:  # type: ignore[no-untyped-def]
    resp = requests.get(stack.url("/api/v1/auth/me"), headers={"Authorization": header} if header else {},
                        timeout=10)
    assert resp.status_code == 401 and resp.headers["Content-Type"] == "application/problem+json"


def test_an_expired_access_token_is_401(stack, customer) -> None:  # type: ignore[no-untyped-def]
    user = accounts.get(stack.db, customer.user_id)
    old = tokens.open_session(stack.db, user, two_factor=False, secret=stack.cfg.token_secret, access_ttl_s=60,
                              refresh_ttl_s=3600, now=time.time() - 3600)

    resp = requests.get(stack.url("/api/v1/auth/me"), headers={"Authorization": f"Bearer {old.access_token}"},
                        timeout=10)

    assert resp.status_code == 401 and "expired" in resp.json()["detail"]


def test_a_token_signed_with_another_secret_is_401(stack, customer) -> None:  # type: ignore[no-untyped-def]
    user = accounts.get(stack.db, customer.user_id)
    forged = tokens.open_session(stack.db, user, two_factor=True, secret="not-the-secret-but-just-as-long-0123456789",
                                 access_ttl_s=60, refresh_ttl_s=60)
    resp = requests.get(stack.url("/api/v1/auth/me"), headers={"Authorization": f"Bearer {forged.access_token}"},
                        timeout=10)
    assert resp.status_code == 401


def test_a_token_signed_with_the_real_secret_cannot_raise_its_role_or_borrow_a_session(stack, customer,  # type: ignore[no-untyped-def]
                                                                                       signed_in) -> None:
    """Issue 20, item 4: the claims carry no authority; the session does (a leaked TOKEN_SECRET)."""
    import jwt

    claims = jwt.decode(customer.http.headers["Authorization"].split()[1], stack.cfg.token_secret,
                        algorithms=["HS256"])
    as_admin = jwt.encode({**claims, "role": "admin", "mfa": True}, stack.cfg.token_secret, algorithm="HS256")
    ops = signed_in[Role.OPS]
    borrowed = jwt.encode({**claims, "sub": ops.user_id, "role": "ops", "mfa": True}, stack.cfg.token_secret,
                          algorithm="HS256")

    raised = requests.get(stack.url("/api/v1/audit"), headers={"Authorization": f"Bearer {as_admin}"}, timeout=10)
    me = requests.get(stack.url("/api/v1/auth/me"), headers={"Authorization": f"Bearer {as_admin}"}, timeout=10)
    other = requests.get(stack.url("/api/v1/auth/me"), headers={"Authorization": f"Bearer {borrowed}"}, timeout=10)

    assert raised.status_code == 403, raised.text
    assert me.status_code == 200 and me.json()["role"] == "customer"
    assert other.status_code == 401


def test_a_refresh_token_reused_two_rotations_later_ends_the_session(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 6: the whole token family is remembered, not only the last rotation."""
    stolen = customer.tokens["refresh_token"]
    refresh = stack.url("/api/v1/auth/refresh")
    first = requests.post(refresh, json={"refresh_token": stolen}, timeout=10)
    second = requests.post(refresh, json={"refresh_token": first.json()["refresh_token"]}, timeout=10)
    assert first.status_code == second.status_code == 200

    reused = requests.post(refresh, json={"refresh_token": stolen}, timeout=10)
    thief = requests.post(refresh, json={"refresh_token": second.json()["refresh_token"]}, timeout=10)
    access = requests.get(stack.url("/api/v1/auth/me"),
                          headers={"Authorization": f"Bearer {second.json()['access_token']}"}, timeout=10)

    assert reused.status_code == 401
    assert thief.status_code == 401 and access.status_code == 401


def test_logout_revokes_the_access_and_refresh_tokens(stack, customer) -> None:  # type: ignore[no-untyped-def]
    assert customer.http.get(customer.url("/api/v1/auth/me")).status_code == 200

    assert customer.http.post(customer.url("/api/v1/auth/logout")).status_code == 204

    assert customer.http.get(customer.url("/api/v1/auth/me")).status_code == 401
    again = requests.post(stack.url("/api/v1/auth/refresh"),
                          json={"refresh_token": customer.tokens["refresh_token"]}, timeout=10)
    assert again.status_code == 401


def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(stack, customer) -> None:  # type: ignore[no-untyped-def]
    first = customer.tokens["refresh_token"]
    rotated = requests.post(stack.url("/api/v1/auth/refresh"), json={"refresh_token": first}, timeout=10)
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != first
    assert requests.get(stack.url("/api/v1/auth/me"), timeout=10,
                        headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200

    stolen = requests.post(stack.url("/api/v1/auth/refresh"), json={"refresh_token": first}, timeout=10)

    assert stolen.status_code == 401
    assert requests.get(stack.url("/api/v1/auth/me"), timeout=10,
                        headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 401


def test_a_session_survives_many_refreshes_in_a_row_and_the_store_keeps_no_token_a_client_holds(
        stack, customer) -> None:  # type: ignore[no-untyped-def]
    held = [customer.tokens["refresh_token"]]
    for _ in range(6):  # an app refreshing its 15-minute access token for an hour and a half
        resp = requests.post(stack.url("/api/v1/auth/refresh"), json={"refresh_token": held[-1]}, timeout=10)
        assert resp.status_code == 200, resp.text
        held.append(resp.json()["refresh_token"])
        assert requests.get(stack.url("/api/v1/auth/me"), timeout=10, headers={
            "Authorization": f"Bearer {resp.json()['access_token']}"}).status_code == 200

    stored = {value for session in stack.db["sessions"].find({"user_id": customer.user_id})
              for value in session.values() if isinstance(value, str)}
    assert stored.isdisjoint(held)


def test_a_password_change_revokes_every_session(stack, customer) -> None:  # type: ignore[no-untyped-def]
    other = requests.post(stack.url("/api/v1/auth/login"), json={"email": customer.email, "password": PASSWORD},
                          timeout=10).json()

    resp = customer.http.post(customer.url("/api/v1/auth/password"),
                              json={"current_password": PASSWORD, "new_password": "an entirely new passphrase"})

    assert resp.status_code == 204
    assert customer.http.get(customer.url("/api/v1/auth/me")).status_code == 401
    assert requests.get(stack.url("/api/v1/auth/me"), timeout=10,
                        headers={"Authorization": f"Bearer {other['access_token']}"}).status_code == 401
    relogin = {"email": customer.email, "password": "an entirely new passphrase"}
    assert requests.post(stack.url("/api/v1/auth/login"), json=relogin, timeout=10).status_code == 200


def test_register_answers_a_taken_email_as_a_new_one_and_mails_the_owner(stack) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 12: the answer does not tell whether an address has an account; a mail to it does."""
    email = f"dup-{uuid.uuid4().hex[:8]}@example.in"
    new = requests.post(stack.url("/api/v1/auth/register"), json={"email": email, "password": PASSWORD}, timeout=10)
    taken = requests.post(stack.url("/api/v1/auth/register"), json={"email": email.upper(), "password": "another "
                          "long passphrase"}, timeout=10)
    weak = requests.post(stack.url("/api/v1/auth/register"), json={"email": "w" + email, "password": "short"},
                         timeout=10)

    assert new.status_code == taken.status_code == 202
    assert new.json() == taken.json()
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "password"
    # The owner's password still works (nothing was changed), and the address got both mails.
    assert requests.post(stack.url("/api/v1/auth/login"), json={"email": email, "password": PASSWORD},
                         timeout=10).status_code == 200

    def mails() -> list[str]:
        got = requests.get(f"{stack.mailbox_url}/messages", params={"to": email}, timeout=10).json()
        subjects = sorted(m["subject"] for m in got)
        return subjects if len(subjects) >= 2 else []

    assert eventually(mails, what="the welcome and the someone-tried mails") == [
        "Someone tried to sign up with your email", "Welcome to Kirana"]


def test_an_unknown_email_and_a_wrong_password_get_the_same_answer(stack, customer) -> None:  # type: ignore[no-untyped-def]
    wrong = requests.post(stack.url("/api/v1/auth/login"), json={"email": customer.email, "password": "nope" * 3},
                          timeout=10)
    unknown = requests.post(stack.url("/api/v1/auth/login"),
                            json={"email": f"ghost-{uuid.uuid4().hex}@example.in", "password": "nope" * 3},
                            timeout=10)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_repeated_failures_lock_the_account_from_that_address_with_retry_after(stack, customer) -> None:  # type: ignore[no-untyped-def]
    bad = {"email": customer.email, "password": "wrong password!"}
    codes = [requests.post(stack.url("/api/v1/auth/login"), json=bad, timeout=10).status_code
             for _ in range(stack.cfg.login_max_failures_pair)]
    locked = requests.post(stack.url("/api/v1/auth/login"), json={"email": customer.email, "password": PASSWORD},
                           timeout=10)

    assert codes == [401] * stack.cfg.login_max_failures_pair
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= stack.cfg.login_lockout_s


def test_behind_a_trusted_proxy_each_client_has_its_own_lockout_and_audit_address(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """Issue 20, item 5: behind nginx every client was nginx, so anyone's failures locked everyone."""
    from tests.harness import api_server

    with api_server(stack.run_dir, stack.cfg, name="api-behind-proxy", TRUSTED_PROXY_HOPS="1") as behind:
        login = f"http://127.0.0.1:{behind.port}/api/v1/auth/login"
        attacker, owner = {"X-Forwarded-For": "203.0.113.66"}, {"X-Forwarded-For": "198.51.100.20"}
        bad = {"email": customer.email, "password": "wrong password!"}
        codes = [requests.post(login, json=bad, headers=attacker, timeout=10).status_code
                 for _ in range(stack.cfg.login_max_failures_pair + 1)]
        mine = requests.post(login, json={"email": customer.email, "password": PASSWORD}, headers=owner, timeout=10)

    assert codes[-1] == 429  # the attacker's address is locked out of this account...
    assert mine.status_code == 200, mine.text  # ...and its owner, elsewhere, is not
    entry = eventually(lambda: stack.db["audit_log"].find_one({"action": "login.failed", "ip": "203.0.113.66"}),
                       what="the failure audited with the client's address")
    assert entry["detail"]["email"] == customer.email


def test_without_a_trusted_proxy_a_forwarded_for_header_is_not_believed(stack, customer) -> None:  # type: ignore[no-untyped-def]
    """A client cannot pick a fresh address per try to dodge the lockout."""
    bad = {"email": customer.email, "password": "wrong password!"}
    codes = [requests.post(stack.url("/api/v1/auth/login"), json=bad, timeout=10,
                           headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
             for i in range(stack.cfg.login_max_failures_pair + 1)]
    assert codes[-1] == 429


def _order_in(stack, client: Client, store: str) -> str:  # type: ignore[no-untyped-def]
    product = stack.db[collections.PRODUCTS].find_one({"store_id": store, "stock": {"$gte": 5}})
    resp = client.submit({"store_id": store, "payment_method": "cod", "items": [{"sku": product["sku"], "qty": 1}]})
    assert resp.status_code == 202
    return resp.json()["id"]


def test_orders_are_visible_to_their_customer_store_and_ops_only(stack, customer, signed_in) -> None:  # type: ignore[no-untyped-def]
    in_a = _order_in(stack, customer, STORE_A)
    in_b = _order_in(stack, customer, STORE_B)
    stranger = stack.customer()

    def status(client: Client, order_id: str) -> int:
        return client.http.get(client.url(f"/api/v1/orders/{order_id}"), timeout=10).status_code

    assert status(customer, in_a) == 200
    assert status(stranger, in_a) == 404, "another customer's order must look like no order at all"
    assert status(signed_in[Role.STORE_STAFF], in_a) == 200
    assert status(signed_in[Role.STORE_STAFF], in_b) == 404
    assert status(signed_in[Role.STORE_OWNER], in_b) == 404
    assert status(signed_in[Role.RIDER], in_a) == 404, "no delivery is assigned to this rider"
    assert status(signed_in[Role.OPS], in_b) == 200
    assert status(signed_in[Role.ADMIN], in_a) == 200


def test_only_customers_submit_orders_and_the_customer_comes_from_the_token(stack, customer, signed_in) -> None:  # type: ignore[no-untyped-def]
    order_id = _order_in(stack, customer, STORE_A)
    assert stack.db[collections.ORDERS].find_one({"_id": order_id})["customer_id"] == customer.user_id
    staff = signed_in[Role.STORE_STAFF].submit({"store_id": STORE_A, "payment_method": "cod",
                                                "items": [{"sku": "X", "qty": 1}]})
    assert staff.status_code == 403


@pytest.mark.parametrize("role", sorted(TWO_FACTOR_REQUIRED))
def test_a_role_that_needs_two_factor_can_only_enrol_until_it_has(stack, role) -> None:  # type: ignore[no-untyped-def]
    client = stack.user(Role(role), store_id=STORE_A, two_factor=False)
    assert client.tokens["two_factor_enrolment_required"] is True

    products = client.http.get(client.url("/api/v1/products"), timeout=10)
    # Issue 20, item 9: the password alone (which this session stands for) does not enrol a device.
    alone = client.http.post(client.url("/api/v1/auth/2fa/enroll"), timeout=10)
    admin = stack.user(Role.ADMIN)
    issued = admin.http.post(admin.url(f"/api/v1/users/{client.user_id}/enrolment-token"), timeout=10)
    token = issued.json()["enrolment_token"]
    wrong = client.http.post(client.url("/api/v1/auth/2fa/enroll"), json={"enrolment_token": token[::-1]}, timeout=10)
    enrol = client.http.post(client.url("/api/v1/auth/2fa/enroll"), json={"enrolment_token": token}, timeout=10)

    assert products.status_code == 403 and products.json()["type"] == "/problems/two-factor-required"
    assert alone.status_code == 403 and alone.json()["type"] == "/problems/enrolment-token-required"
    assert issued.status_code == 201 and issued.json()["expires_in"] == stack.cfg.enrolment_token_ttl_s
    assert wrong.status_code == 403
    assert enrol.status_code == 200 and enrol.json()["provisioning_uri"].startswith("otpauth://totp/")
    # Once: a second enrolment with the same token is refused.
    again = client.http.post(client.url("/api/v1/auth/2fa/enroll"), json={"enrolment_token": token}, timeout=10)
    assert again.status_code == 403
    assert stack.db["enrolment_tokens"].find_one({"_id": client.user_id}) is None


def test_an_admin_changes_a_role_and_the_users_sessions_end(stack, customer, signed_in) -> None:  # type: ignore[no-untyped-def]
    admin = signed_in[Role.ADMIN]
    resp = admin.http.put(admin.url(f"/api/v1/users/{customer.user_id}/role"),
                          json={"role": "store_staff", "store_id": STORE_B}, timeout=10)
    missing_store = admin.http.put(admin.url(f"/api/v1/users/{customer.user_id}/role"),
                                   json={"role": "store_staff"}, timeout=10)

    assert resp.status_code == 200 and resp.json()["role"] == "store_staff"
    assert missing_store.status_code == 422
    assert customer.http.get(customer.url("/api/v1/auth/me")).status_code == 401
    assert accounts.get(stack.db, customer.user_id).store_id == STORE_B


def _audit_entries(client: Client, **query: Any) -> list[dict]:
    resp = client.http.get(client.url("/api/v1/audit"), params=query, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def test_logins_and_role_changes_reach_the_audit_log(stack, customer, signed_in) -> None:  # type: ignore[no-untyped-def]
    ops = signed_in[Role.OPS]
    deadline = time.monotonic() + 20
    while not (entries := _audit_entries(ops, actor=customer.user_id, action="login.succeeded")):
        assert time.monotonic() < deadline, "the audit worker never recorded the login"
        time.sleep(0.2)
    assert entries[0]["detail"]["two_factor"] is False
    assert entries[0]["seq"] >= 1 and len(entries[0]["hash"]) == 64
