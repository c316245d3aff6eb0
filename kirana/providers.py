"""Providers: what actually sends a notification, by email, SMS or push.

Each provider takes a `Message` and answers a `Delivery`: whether it went, whether trying
again later could help, and a short response for the delivery log. `send` does not raise
for a provider's refusal, a timeout or a network error: those are answers too.

- `ConsoleProvider` writes the message to the log (development).
- `SmtpProvider` sends a MIME email (UTF-8) over SMTP with smtplib. SMTP's reply codes
  are the reverse sense of HTTP's: 4xx is transient (retry), 5xx permanent.
- `SmsHttpProvider` speaks MSG91's shape: `POST {base}/api/v5/sms` with an `authkey` header.
- `PushHttpProvider` speaks FCM's legacy HTTP API: `POST {base}/fcm/send` with
  `Authorization: key=...`; a dead device token is answered with "invalid_token" in the
  response so the caller can forget the token.

`provider_for(channel, cfg)` picks one from the settings. Keys never appear in a
`Delivery` or in a log line. Free of Flask and Celery.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import smtplib
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from typing import Any, Protocol

import requests

from kirana.config import Settings

log = logging.getLogger(__name__)

CHANNELS = ("email", "sms", "push")
RESPONSE_MAX = 300  # characters of a provider's answer kept in a Delivery

# An address we are willing to put on an SMTP command line: no spaces, brackets or line breaks.
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+\.[^@\s<>()\[\],;:\"\\]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# HTTP 4xx answers that are worth trying again later all the same.
_HTTP_RETRYABLE_4XX = frozenset({408, 429})
# FCM legacy per-message errors.
FCM_INVALID_TOKEN = frozenset({"NotRegistered", "InvalidRegistration"})
FCM_RETRYABLE = frozenset({"Unavailable", "InternalServerError", "DeviceMessageRateExceeded",
                           "TopicsMessageRateExceeded"})


@dataclass(frozen=True)
class Message:
    notification_id: str  # also the provider idempotency key where the API supports one
    channel: str  # "email" | "sms" | "push"
    to: str  # email address, E.164 phone, or device push token
    subject: str | None
    body: str
    language: str = "en"


@dataclass(frozen=True)
class Delivery:
    ok: bool
    retryable: bool  # True for 5xx, timeouts, connection errors; False for 4xx
    response: str  # provider status + short body, for the delivery log (no secrets!)
    provider: str


class Provider(Protocol):
    name: str

    def send(self, message: Message) -> Delivery: ...


def _clip(text: str, secrets: tuple[str, ...] = ()) -> str:
    """One line, at most RESPONSE_MAX characters, with any secret blanked out."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= RESPONSE_MAX else text[: RESPONSE_MAX - 3] + "..."


# -- console ---------------------------------------------------------------------------------


class ConsoleProvider:
    """Writes the message to the log at WARNING, for development; always succeeds."""

    name = "console"

    def send(self, message: Message) -> Delivery:
        text = " ".join(part for part in (message.subject, message.body) if part)
        log.warning("[console %s] to %s: %s", message.channel, message.to, text)
        return Delivery(ok=True, retryable=False, response="logged to console", provider=self.name)


# -- email over SMTP -------------------------------------------------------------------------


# Per thread (the notifications pool runs threads), per process (a forked child must not share
# its parent's socket): the open connection to each relay, keyed (host, port, pid).
_SMTP_KEPT = threading.local()


@functools.cache
def _local_hostname() -> str:
    """What we say in EHLO. smtplib would look it up (a DNS query) on every connection."""
    return socket.getfqdn() or "localhost"


class SmtpProvider:
    """Email through an SMTP relay (plain SMTP; the relay is expected on a private network).

    The Message-ID is `<notification_id@sender-domain>`, so a copy sent twice (a retry
    after an answer lost to a timeout) is recognisable as the same message.
    """

    name = "smtp"

    def __init__(self, host: str, port: int, sender: str, timeout: float, *,
                 local_hostname: str | None = None) -> None:
        address = parseaddr(sender)[1]
        if not address.isascii() or not _EMAIL.match(address):
            raise ValueError(f"SMTP sender must contain an email address, got {sender!r}")
        self.host = host
        self.port = port
        self.sender = sender
        self.sender_address = address
        self.domain = address.rsplit("@", 1)[1]
        self.timeout = timeout
        self.local_hostname = local_hostname

    def message_id(self, notification_id: str) -> str:
        return f"<{notification_id}@{self.domain}>"

    def build(self, message: Message) -> EmailMessage:
        """The MIME email: UTF-8 text, the subject RFC 2047-encoded when it is not ASCII."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = self.message_id(message.notification_id)
        mail["X-Kirana-Notification-Id"] = message.notification_id
        # Devanagari and other non-ASCII text as base64 (compact and safe on any relay).
        mail.set_content(message.body, charset="utf-8", cte=None if message.body.isascii() else "base64")
        mail["Content-Language"] = message.language  # after set_content, which drops Content-* headers
        return mail

    def _refused(self, why: str) -> Delivery:
        return Delivery(ok=False, retryable=False, response=_clip(why), provider=self.name)

    def send(self, message: Message) -> Delivery:
        if not message.to.isascii() or not _EMAIL.match(message.to):
            return self._refused("invalid recipient address (plain ASCII user@domain expected)")
        try:
            raw = self.build(message).as_bytes(policy=SMTP_POLICY)  # CRLF line ends, as SMTP wants
        except ValueError as exc:  # a line break in a header value, for one
            return self._refused(f"cannot build the email: {exc}")
        delivery = self._transmit(message.to, raw)
        log.info("email %s via %s:%d: %s", message.notification_id, self.host, self.port, delivery.response)
        return delivery

    def _transmit(self, to: str, raw: bytes) -> Delivery:
        """One mail transaction, on this thread's open connection to the relay when it still answers.

        Opening a connection per email (TCP, EHLO, QUIT) cost the notifications worker and the
        relay more than the mail itself; a kept connection costs one NOOP to know it is alive, and
        a dead one is replaced before anything of the message is sent, so nothing goes twice.
        """
        smtp = self._kept()
        try:
            if smtp is None:
                smtp = smtplib.SMTP(local_hostname=self.local_hostname or _local_hostname(), timeout=self.timeout)
                smtp.connect(self.host, self.port)
                smtp.ehlo_or_helo_if_needed()
            code, reply = smtp.mail(self.sender_address)
            if code != 250:
                return self._finish(smtp, self._reply(code, reply, "MAIL"))
            code, reply = smtp.rcpt(to)
            if code not in (250, 251):
                return self._finish(smtp, self._reply(code, reply, "RCPT"))
            code, reply = smtp.data(raw)
            return self._finish(smtp, self._reply(code, reply, "DATA"))
        except smtplib.SMTPResponseException as exc:
            _quit(smtp)
            return self._reply(exc.smtp_code, exc.smtp_error, _stage(exc))
        except smtplib.SMTPServerDisconnected as exc:
            _quit(smtp)
            if isinstance(exc.__context__, TimeoutError):  # smtplib reports a read timeout this way
                return Delivery(ok=False, retryable=True, response=_clip(f"timeout after {self.timeout}s: {exc}"),
                                provider=self.name)
            return Delivery(ok=False, retryable=True, response=_clip(f"disconnected: {exc}"), provider=self.name)
        except TimeoutError as exc:
            _quit(smtp)
            return Delivery(ok=False, retryable=True, response=_clip(f"timeout after {self.timeout}s: {exc}"),
                            provider=self.name)
        except (OSError, smtplib.SMTPException) as exc:
            _quit(smtp)
            return Delivery(ok=False, retryable=True, response=_clip(f"connection error: {type(exc).__name__}: {exc}"),
                            provider=self.name)

    def _kept(self) -> smtplib.SMTP | None:
        """This thread's connection to the relay, if it has one that answers a NOOP; else None."""
        found = getattr(_SMTP_KEPT, "connections", {}).pop((self.host, self.port, os.getpid()), None)
        if found is None:
            return None
        try:
            if found.noop()[0] == 250:
                return found
        except (OSError, smtplib.SMTPException):
            pass  # closed by the relay while idle: a new one
        _quit(found)
        return None

    def _finish(self, smtp: smtplib.SMTP, delivery: Delivery) -> Delivery:
        """Keep the connection for this thread's next email (reset after a refusal), or close it."""
        try:
            if not delivery.ok:
                smtp.rset()
            if not hasattr(_SMTP_KEPT, "connections"):
                _SMTP_KEPT.connections = {}
            _SMTP_KEPT.connections[(self.host, self.port, os.getpid())] = smtp
        except (OSError, smtplib.SMTPException):
            _quit(smtp)
        return delivery

    def _reply(self, code: int, reply: bytes | str, stage: str) -> Delivery:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        where = f" at {stage}" if stage and not 200 <= code < 300 else ""
        response = _clip(f"{code} {text}{where}")
        if 200 <= code < 300:
            return Delivery(ok=True, retryable=False, response=response, provider=self.name)
        # SMTP: 4xx transient, 5xx permanent (anything else: a broken server, try again).
        return Delivery(ok=False, retryable=not 500 <= code < 600, response=response, provider=self.name)


def _stage(exc: smtplib.SMTPResponseException) -> str:
    if isinstance(exc, smtplib.SMTPConnectError):
        return "greeting"
    if isinstance(exc, smtplib.SMTPHeloError):
        return "EHLO"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "MAIL"
    if isinstance(exc, smtplib.SMTPDataError):
        return "DATA"
    return "reply"


def _quit(smtp: smtplib.SMTP | None) -> None:
    """Say goodbye if the connection is still up; what the server answers no longer matters."""
    if smtp is None:
        return
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        smtp.close()


# -- HTTP providers --------------------------------------------------------------------------


class _Http:
    """A requests session per thread (the notifications pool runs threads), no redirects, no retries."""

    def __init__(self, base_url: str, timeout: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must be http(s)://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def post(self, path: str, payload: dict[str, Any], headers: dict[str, str]) -> requests.Response:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session.post(self.base_url + path, json=payload, headers=headers, timeout=self.timeout,
                            allow_redirects=False)


def _network_failure(exc: requests.RequestException, timeout: float, provider: str) -> Delivery:
    if isinstance(exc, requests.Timeout):
        why = f"timeout after {timeout}s"
    elif isinstance(exc, requests.ConnectionError):
        why = f"connection error: {type(exc).__name__}"
    else:
        why = f"request failed: {type(exc).__name__}"
    return Delivery(ok=False, retryable=True, response=why, provider=provider)


def _http_retryable(status: int) -> bool:
    """5xx and a few 4xx (408 timeout, 429 slow down) are transient; other answers are final."""
    return status >= 500 or status in _HTTP_RETRYABLE_4XX


def _status_line(resp: requests.Response, secrets: tuple[str, ...]) -> str:
    retry_after = resp.headers.get("Retry-After")
    extra = f" retry_after={retry_after}" if retry_after else ""
    return _clip(f"{resp.status_code} {resp.text[:RESPONSE_MAX]}{extra}", secrets)


class SmsHttpProvider:
    """SMS in MSG91's shape. The notification id goes as `reference` (MSG91 keeps it with the report)."""

    name = "sms_http"

    def __init__(self, base_url: str, api_key: str, sender_id: str, timeout: float) -> None:
        self._http = _Http(base_url, timeout)
        self._api_key = api_key
        self.sender_id = sender_id

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def __repr__(self) -> str:  # never the key
        return f"SmsHttpProvider(base_url={self.base_url!r}, sender_id={self.sender_id!r})"

    def send(self, message: Message) -> Delivery:
        if not _E164.match(message.to):
            return Delivery(ok=False, retryable=False, response="invalid phone number (E.164 expected)",
                            provider=self.name)
        payload = {"sender": self.sender_id, "to": message.to, "message": message.body,
                   "reference": message.notification_id}
        try:
            resp = self._http.post("/api/v5/sms", payload, {"authkey": self._api_key})
        except requests.RequestException as exc:
            delivery = _network_failure(exc, self._http.timeout, self.name)
        else:
            delivery = self._judge(resp)
        log.info("sms %s: %s", message.notification_id, delivery.response)
        return delivery

    def _judge(self, resp: requests.Response) -> Delivery:
        secrets = (self._api_key,)
        response = _status_line(resp, secrets)
        if not 200 <= resp.status_code < 300:
            return Delivery(ok=False, retryable=_http_retryable(resp.status_code), response=response,
                            provider=self.name)
        try:
            data = resp.json()
        except ValueError:
            data = None
        # MSG91 can answer 200 with {"type": "error", ...}: a refusal, not a success.
        if isinstance(data, dict) and data.get("type") == "error":
            return Delivery(ok=False, retryable=False, response=response, provider=self.name)
        return Delivery(ok=True, retryable=False, response=response, provider=self.name)


class PushHttpProvider:
    """Push in the shape of FCM's legacy HTTP API. FCM has no idempotency key: the
    notification id travels in `data` so the app can drop a duplicate."""

    name = "push_http"

    def __init__(self, base_url: str, server_key: str, timeout: float) -> None:
        self._http = _Http(base_url, timeout)
        self._server_key = server_key

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def __repr__(self) -> str:  # never the key
        return f"PushHttpProvider(base_url={self.base_url!r})"

    def send(self, message: Message) -> Delivery:
        if not message.to or any(c.isspace() for c in message.to):
            return Delivery(ok=False, retryable=False, response="invalid_token: empty or malformed device token",
                            provider=self.name)
        notification: dict[str, str] = {"body": message.body}
        if message.subject:
            notification["title"] = message.subject
        payload = {"to": message.to, "notification": notification,
                   "data": {"notification_id": message.notification_id}}
        try:
            resp = self._http.post("/fcm/send", payload, {"Authorization": f"key={self._server_key}"})
        except requests.RequestException as exc:
            delivery = _network_failure(exc, self._http.timeout, self.name)
        else:
            delivery = self._judge(resp)
        log.info("push %s: %s", message.notification_id, delivery.response)
        return delivery

    def _judge(self, resp: requests.Response) -> Delivery:
        secrets = (self._server_key,)
        if resp.status_code != 200:
            return Delivery(ok=False, retryable=_http_retryable(resp.status_code),
                            response=_status_line(resp, secrets), provider=self.name)
        try:
            data = resp.json()
            result = data["results"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            return Delivery(ok=False, retryable=True, response=_clip(f"200 unexpected body: {resp.text}", secrets),
                            provider=self.name)
        if not isinstance(result, dict):
            return Delivery(ok=False, retryable=True, response=_clip(f"200 unexpected body: {resp.text}", secrets),
                            provider=self.name)
        error = result.get("error")
        if error is None and result.get("message_id"):
            response = f"200 message_id={result['message_id']}"
            if result.get("registration_id"):  # FCM's canonical id: the app's token changed
                response += f" canonical_token={result['registration_id']}"
            return Delivery(ok=True, retryable=False, response=_clip(response, secrets), provider=self.name)
        if error in FCM_INVALID_TOKEN:
            return Delivery(ok=False, retryable=False, response=f"200 error={error} invalid_token", provider=self.name)
        return Delivery(ok=False, retryable=error in FCM_RETRYABLE, response=_clip(f"200 error={error}", secrets),
                        provider=self.name)


# -- choosing one ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def provider_for(channel: str, cfg: Settings) -> Provider:
    """The provider the settings name for `channel`; one instance per (channel, settings).

    Raises ValueError for a channel other than email/sms/push, or an unknown provider kind.
    """
    if channel == "email":
        kind = cfg.email_provider
        if kind == "smtp":
            return SmtpProvider(cfg.smtp_host, cfg.smtp_port, cfg.smtp_sender, cfg.notify_timeout_s)
    elif channel == "sms":
        kind = cfg.sms_provider
        if kind == "http":
            return SmsHttpProvider(cfg.sms_base_url, cfg.sms_api_key, cfg.sms_sender_id, cfg.notify_timeout_s)
    elif channel == "push":
        kind = cfg.push_provider
        if kind == "http":
            return PushHttpProvider(cfg.push_base_url, cfg.push_server_key, cfg.notify_timeout_s)
    else:
        raise ValueError(f"no provider for channel {channel!r}; expected one of {CHANNELS}")
    if kind == "console":
        return ConsoleProvider()
    choices = {"email": "smtp|console", "sms": "http|console", "push": "http|console"}[channel]
    raise ValueError(f"unknown {channel} provider {kind!r}; expected {choices}")
