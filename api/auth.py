"""/api/v1/auth: register, log in (with two-factor), refresh, log out, password, two-factor."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

from api import responses as out
from api import schemas
from api.contract import documented
from api.problems import Problem
from api.security import client_address, principal, public, requires
from kirana import accounts, audit, db, login_guard, redis_conn, throttle, tokens, two_factor
from kirana.accounts import User
from kirana.config import Settings, settings
from kirana.permissions import TWO_FACTOR_REQUIRED
from tasks import audit as audit_task
from tasks import notifications as notification_tasks

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _audit(action: str, *, actor: str | None, target: str | None = None, **detail: object) -> None:
    audit_task.send(audit.new_event(action, actor=actor, target=target, detail=detail or None,
                                    ip=client_address()))


def _too_many(slug: str, title: str, detail: str, retry_after_s: int) -> Problem:
    """A 429 that says when to come back, in the body and in Retry-After."""
    problem = Problem(429, slug, title, detail, retry_after_s=retry_after_s)
    problem.headers = {"Retry-After": str(retry_after_s)}
    return problem


def _locked(exc: login_guard.LockedOut) -> Problem:
    return _too_many("too-many-attempts", "Too many failed attempts", str(exc), exc.retry_after_s)


def _limits(cfg: Settings) -> login_guard.Limits:
    return login_guard.Limits(pair=cfg.login_max_failures_pair, account=cfg.login_max_failures_account,
                              address=cfg.login_max_failures_address, window_s=cfg.login_failure_window_s,
                              lockout_s=cfg.login_lockout_s)


_BAD_CREDENTIALS = ("invalid-credentials", "Invalid credentials", "the email or the password is wrong")


def _checked_password(email: str, password: str) -> User:
    """The account, after the lockout check and the password; failures are counted and audited."""
    cfg = settings()
    r = redis_conn.client()
    try:
        login_guard.check(r, email, client_address())
    except login_guard.LockedOut as exc:
        raise _locked(exc) from None
    try:
        return accounts.authenticate(db.database(), email, password)
    except accounts.BadCredentials:
        login_guard.failed(r, email, client_address(), _limits(cfg))
        _audit("login.failed", actor=None, email=accounts.normalize_email(email), reason="bad_credentials")
        raise Problem(401, *_BAD_CREDENTIALS) from None


def _second_factor(user: User, body: schemas.LoginIn) -> bool:
    """True when the login passed two-factor; raises when it owes or fails it."""
    database = db.database()
    if not two_factor.is_enabled(database, user.id):
        return False
    try:
        if body.otp:
            two_factor.verify_totp(database, user.id, body.otp)
        elif body.recovery_code:
            two_factor.use_recovery_code(database, user.id, body.recovery_code)
        elif body.sms_code:
            two_factor.verify_sms_code(database, user.id, body.sms_code)
        else:
            raise Problem(401, "two-factor-required", "Two-factor code required",
                          "send otp (authenticator app), recovery_code, or sms_code with the login",
                          methods=["otp", "recovery_code", "sms_code"])
    except two_factor.TwoFactorError:
        login_guard.failed(redis_conn.client(), user.email, client_address(), _limits(settings()))
        _audit("login.failed", actor=user.id, reason="bad_second_factor")
        raise Problem(401, "invalid-two-factor-code", "Invalid two-factor code",
                      "the code is wrong, expired or already used") from None
    if body.recovery_code:
        _audit("2fa.recovery_code_used", actor=user.id,
               left=two_factor.recovery_codes_left(database, user.id))
    return True


def _open_session(user: User, *, passed_two_factor: bool) -> tokens.Tokens:
    cfg = settings()
    return tokens.open_session(db.database(), user, two_factor=passed_two_factor, secret=cfg.token_secret,
                               access_ttl_s=cfg.access_token_ttl_s, refresh_ttl_s=cfg.refresh_token_ttl_s)


@bp.post("/register")
@public
@documented(body=schemas.RegisterIn, ok={202: out.RegisteredOut}, errors=(429,), tags=("auth",))
def register() -> tuple[Response, int]:
    """Register a customer account: the same answer whether or not the email has one (a mail says which)."""
    cfg = settings()
    # Before the body is read: each registration costs a 64 MiB password hash and an account.
    wait = throttle.hit(redis_conn.client(), "register", client_address(), limit=cfg.register_per_address_per_hour,
                        window_s=3600)
    if wait:
        raise _too_many("too-many-registrations", "Too many registrations",
                        f"at most {cfg.register_per_address_per_hour} registrations an hour from one address; "
                        f"try again in {wait} s", wait)
    body = schemas.parse_body(request, schemas.RegisterIn)
    database = db.database()
    try:
        # Hashes the password before it finds the email taken: both answers take the same time.
        user = accounts.register(database, body.email, body.password, phone=body.phone)
    except accounts.EmailTaken:
        # Told to the owner of the address, not to whoever asked: the answer below is the same.
        owner = accounts.find_by_email(database, body.email)
        if owner is not None:
            notification_tasks.trigger(owner.id, "account_exists", {"email": owner.email},
                                       key=f"account_exists:{owner.id}:{uuid.uuid4().hex}")
        _audit("account.register_existing", actor=None, target=owner.id if owner else None)
    except accounts.WeakPassword as exc:
        raise Problem(422, "validation-error", "Request body is invalid", str(exc),
                      errors=[{"field": "password", "message": str(exc), "type": "weak_password"}]) from None
    else:
        notification_tasks.trigger(user.id, "welcome", {"email": user.email}, key=f"welcome:{user.id}")
        _audit("account.registered", actor=user.id, target=user.id)
    return jsonify({"status": "accepted",
                    "detail": "if the address can be registered, the account is ready: log in with your password. "
                              "A mail to the address says so."}), 202


@bp.post("/login")
@public
@documented(body=schemas.LoginIn, ok={200: out.LoginOut}, errors=(401, 429), tags=("auth",))
def login() -> Response:
    """Log in (with a two-factor code where the account has it): an access and a refresh token."""
    body = schemas.parse_body(request, schemas.LoginIn)
    user = _checked_password(body.email, body.password)
    passed = _second_factor(user, body)
    login_guard.succeeded(redis_conn.client(), user.email, client_address())
    issued = _open_session(user, passed_two_factor=passed)
    _audit("login.succeeded", actor=user.id, session=issued.session_id, two_factor=passed)
    view = issued.view() | {"user": user.view(), "two_factor": passed}
    if user.role in TWO_FACTOR_REQUIRED and not passed:
        view["two_factor_enrolment_required"] = True
    return jsonify(view)


@bp.post("/refresh")
@public
@documented(body=schemas.RefreshIn, ok={200: out.TokensOut}, errors=(401,), tags=("auth",))
def refresh() -> Response:
    """Trade a refresh token for new tokens (it rotates; a reused one ends the session)."""
    body = schemas.parse_body(request, schemas.RefreshIn)
    cfg = settings()
    database = db.database()
    try:
        issued = tokens.refresh(database, body.refresh_token, lambda uid: accounts.get(database, uid),
                                secret=cfg.token_secret, access_ttl_s=cfg.access_token_ttl_s)
    except tokens.TokenError as exc:
        raise Problem(401, "unauthorized", "Unauthorized", str(exc)) from None
    return jsonify(issued.view())


@bp.post("/logout")
@requires("account:self")
@documented(ok={204: None}, tags=("auth",))
def logout() -> tuple[str, int]:
    """End this session (its access and refresh tokens)."""
    me = principal()
    tokens.revoke(db.database(), me.session_id)
    _audit("token.revoked", actor=me.user_id, session=me.session_id, reason="logout")
    return "", 204


@bp.get("/me")
@requires("account:self")
@documented(ok={200: out.MeOut}, tags=("auth",))
def me() -> Response:
    """The signed-in account."""
    current = principal()
    database = db.database()
    view = accounts.get(database, current.user_id).view()
    view["two_factor_enabled"] = two_factor.is_enabled(database, current.user_id)
    return jsonify(view)


@bp.post("/password")
@requires("account:self")
@documented(body=schemas.PasswordChangeIn, ok={204: None}, errors=(401,), tags=("auth",))
def change_password() -> tuple[str, int]:
    """Change the password; every session of the account ends."""
    body = schemas.parse_body(request, schemas.PasswordChangeIn)
    current = principal()
    database = db.database()
    try:
        accounts.change_password(database, current.user_id, body.current_password, body.new_password)
    except accounts.BadCredentials:
        raise Problem(401, *_BAD_CREDENTIALS) from None
    except accounts.WeakPassword as exc:
        raise Problem(422, "validation-error", "Request body is invalid", str(exc),
                      errors=[{"field": "new_password", "message": str(exc), "type": "weak_password"}]) from None
    revoked = tokens.revoke_all(database, current.user_id)
    _audit("password.changed", actor=current.user_id, sessions_revoked=revoked)
    return "", 204


@bp.post("/2fa/enroll")
@requires("account:self")
@documented(body=schemas.EnrolIn, body_optional=True, ok={200: out.EnrolmentOut}, errors=(403, 409),
            tags=("auth",))
def enroll() -> Response:
    """Start two-factor enrolment (TOTP); roles that require it also send an admin-issued enrolment token."""
    body = schemas.parse_body(request, schemas.EnrolIn) if request.content_length else schemas.EnrolIn()
    current = principal()
    database = db.database()
    user = accounts.get(database, current.user_id)
    # A password alone must not let its holder enrol their own authenticator on a privileged
    # account: the token comes from an admin, out of band, and works once.
    if (user.role in TWO_FACTOR_REQUIRED and not two_factor.is_enabled(database, user.id)
            and not (body.enrolment_token and two_factor.take_enrolment_token(database, user.id,
                                                                             body.enrolment_token))):
        _audit("2fa.enrolment_refused", actor=user.id, target=user.id, reason="enrolment_token")
        raise Problem(403, "enrolment-token-required", "Enrolment token required",
                      f"the {user.role} role enrols two-factor with a one-time token from an admin")
    try:
        enrolment = two_factor.begin_enrolment(database, user.id, user.email, issuer=settings().totp_issuer)
    except two_factor.AlreadyEnabled:
        raise Problem(409, "two-factor-already-enabled", "Two-factor already enabled",
                      "remove it first to enrol a new device") from None
    return jsonify({"secret": enrolment.secret, "provisioning_uri": enrolment.provisioning_uri,
                    "qr_png": enrolment.qr_data_uri})


@bp.post("/2fa/confirm")
@requires("account:self")
@documented(body=schemas.CodeIn, ok={200: out.RecoveryCodesOut}, tags=("auth",))
def confirm() -> Response:
    """Confirm enrolment with a code from the app: two-factor is on."""
    body = schemas.parse_body(request, schemas.CodeIn)
    current = principal()
    try:
        codes = two_factor.confirm_enrolment(db.database(), current.user_id, body.code)
    except two_factor.TwoFactorError:
        raise Problem(422, "invalid-two-factor-code", "Invalid two-factor code",
                      "the code does not match the enrolment; start again if it expired") from None
    _audit("2fa.enrolled", actor=current.user_id, target=current.user_id)
    return jsonify({"recovery_codes": codes,
                    "detail": "keep these codes safe; each works once. Log in again to use two-factor."})


@bp.delete("/2fa")
@requires("account:self")
@documented(body=schemas.RemoveTwoFactorIn, ok={204: None}, errors=(403, 409, 429), tags=("auth",))
def remove() -> tuple[str, int]:
    """Remove two-factor with the password and a current code (not for roles that require it)."""
    body = schemas.parse_body(request, schemas.RemoveTwoFactorIn)
    current = principal()
    if current.role in TWO_FACTOR_REQUIRED:
        raise Problem(409, "two-factor-required-for-role", "Two-factor is required for this role",
                      f"the {current.role} role cannot remove two-factor")
    database = db.database()
    user = accounts.get(database, current.user_id)
    # A stolen access token alone must not strip the account's second factor: the password and a
    # code, each failure counted toward the login lockout like a failed login.
    r = redis_conn.client()
    try:
        login_guard.check(r, user.email, client_address())
    except login_guard.LockedOut as exc:
        raise _locked(exc) from None
    checks: list[tuple[Callable[[], object], tuple[type[Exception], ...], str, Problem]] = [
        (lambda: accounts.authenticate(database, user.email, body.password), (accounts.BadCredentials,),
         "bad_password", Problem(403, "invalid-credentials", "Invalid credentials", "the password is wrong")),
        (lambda: two_factor.verify_totp(database, user.id, body.code), (two_factor.TwoFactorError,),
         "bad_code", Problem(422, "invalid-two-factor-code", "Invalid two-factor code", "the code is wrong")),
    ]
    for check, failures, reason, problem in checks:
        try:
            check()
        except failures:
            login_guard.failed(r, user.email, client_address(), _limits(settings()))
            _audit("2fa.remove_failed", actor=user.id, target=user.id, reason=reason)
            raise problem from None
    two_factor.disable(database, current.user_id)
    _audit("2fa.removed", actor=current.user_id, target=current.user_id)
    return "", 204


@bp.post("/2fa/sms")
@public
@documented(body=schemas.SmsCodeIn, ok={202: out.SmsSentOut}, errors=(401, 409, 429), tags=("auth",))
def sms_code() -> tuple[Response, int]:
    """Send a one-time login code by SMS."""
    body = schemas.parse_body(request, schemas.SmsCodeIn)
    user = _checked_password(body.email, body.password)
    database = db.database()
    if not user.phone or not two_factor.is_enabled(database, user.id):
        raise Problem(409, "sms-code-unavailable", "No SMS code for this account",
                      "an SMS code needs two-factor enabled and a phone number on the account")
    cfg = settings()
    try:
        code = two_factor.issue_sms_code(database, redis_conn.client(), user.id, per_window=cfg.sms_otp_per_window,
                                         window_s=cfg.sms_otp_window_s, ttl_s=cfg.sms_otp_ttl_s)
    except two_factor.RateLimited as exc:
        raise _too_many("too-many-codes", "Too many SMS codes", f"try again in {exc.retry_after_s} s",
                        exc.retry_after_s) from None
    # A fresh key per code: each request is its own message.
    ref = two_factor.stash_sms_code(redis_conn.client(), code, ttl_s=cfg.sms_otp_ttl_s)
    notification_tasks.trigger(user.id, "login_otp", {"code_ref": ref, "minutes": cfg.sms_otp_ttl_s // 60},
                               key=f"otp:{user.id}:{uuid.uuid4().hex}")
    _audit("2fa.sms_code_sent", actor=user.id)
    return jsonify({"status": "sent", "expires_in": cfg.sms_otp_ttl_s}), 202
