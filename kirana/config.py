"""Every setting Kirana reads, in one place.

Settings come from environment variables; each default fits the embedded
stack that `make run` and the tests start, so nothing needs configuring to
try Kirana, and production sets only what differs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment. Build with `Settings.from_env()`.

    Secrets are fields with repr=False, so a logged Settings never shows them.
    """

    # "production" makes every process refuse a development default of a secret (kirana/preflight.py).
    kirana_env: str = "development"
    redis_url: str = "redis://127.0.0.1:6390/0"
    mongo_url: str = "mongodb://127.0.0.1:27027"
    mongo_db: str = "kirana"
    # How long a request waits for MongoDB or Redis before answering 503.
    mongo_timeout_ms: int = 2000
    redis_timeout_s: float = 2.0
    # Each process counts its MongoDB commands by collection into the data dir (make soak reads them).
    mongo_command_counts: int = 0  # 1: on

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    api_threads: int = 8
    # The WebSocket server (gevent): 0 means API_PORT + 1, so parallel stacks do not collide.
    ws_port: int = 0
    # Open WebSockets check their token again this often: logout and expiry end them within it.
    ws_reauth_s: float = 60.0
    # Open WebSockets per user, across every ws process (a 429 refusal, close code 4429, beyond).
    ws_max_sockets_per_user: int = 10
    ws_workers: int = 1
    ws_worker_connections: int = 5000
    flower_port: int = 5555
    flower_basic_auth: str = field(default="ops:kirana-dev", repr=False)
    # celery-exporter (Celery metrics for Prometheus), started by `make run`.
    exporter_port: int = 9808

    data_dir: Path = field(default_factory=lambda: ROOT / "var")
    # JSON log lines (kirana/logs.py) at this level, from the API, workers, beat and the relay.
    log_level: str = "INFO"

    # Browser origins allowed to call the API (CORS), comma-separated, e.g. "https://shop.example";
    # empty: no cross-origin access at all (apps and servers need none).
    cors_allowed_origins: str = ""
    # Proxies in front of the API whose X-Forwarded-For/-Proto are trusted (werkzeug's ProxyFix);
    # 0: none, the connection's peer is the client. Behind nginx alone: 1.
    trusted_proxy_hops: int = 0

    max_body_bytes: int = 64 * 1024
    max_order_items: int = 100
    max_item_qty: int = 1000

    # Above the longest task's hard limit and the longest retry countdown:
    # Redis redelivers an unacked message only after this many seconds.
    visibility_timeout_s: int = 3600
    retry_backoff_max_s: int = 600
    task_max_retries: int = 8

    # A message delivered more often than this without finishing is dead-lettered.
    redelivery_cap: int = 5
    worker_heartbeat_s: float = 5.0
    # /readyz wants every pool seen alive within this many seconds.
    worker_alive_window_s: float = 20.0

    # An order still "accepted" after this long is enqueued again by beat.
    stuck_order_after_s: int = 60
    # Follow-ups recorded with an order's move but not handed on this long after (the run that
    # moved it died first) are sent by the dispatch sweep in the outbox relay.
    dispatch_sweep_s: float = 5.0

    # Mobile backend (kirana.sync, kirana.analytics).
    sync_max_ops: int = 200
    sync_sweep_after_s: int = 30
    analytics_timezone: str = "Asia/Kolkata"
    analytics_batch: int = 500

    # Access control. The default secret is for the embedded stack only;
    # production must set TOKEN_SECRET (deploy files require it).
    token_secret: str = field(default="kirana-dev-only-secret-change-me-0123456789", repr=False)
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 86_400
    # Failed logins within the window before a lockout: per (account, address), per account from
    # anywhere, per address across accounts (kirana/login_guard.py says why these three).
    login_max_failures_pair: int = 5
    login_max_failures_account: int = 50
    login_max_failures_address: int = 20
    login_failure_window_s: int = 900
    login_lockout_s: int = 900
    # argon2id needs 64 MiB per hash: at most this many password hashes or checks at once per process.
    password_hashes_at_once: int = 2
    # Registrations per client address per hour (429 beyond): each costs a 64 MiB hash and an account.
    register_per_address_per_hour: int = 10
    sms_otp_per_window: int = 3
    sms_otp_window_s: int = 600
    sms_otp_ttl_s: int = 300
    totp_issuer: str = "Kirana"
    # How long an admin-issued two-factor enrolment token for a privileged account stays usable.
    enrolment_token_ttl_s: int = 72 * 3600

    # Razorpay. The defaults are the local sandbox's; production sets real
    # keys and RAZORPAY_BASE_URL=https://api.razorpay.com.
    razorpay_base_url: str = "http://127.0.0.1:9100"
    razorpay_key_id: str = "rzp_test_kirana"
    razorpay_key_secret: str = field(default="kirana_sandbox_key_secret", repr=False)
    razorpay_webhook_secret: str = field(default="kirana_sandbox_webhook_secret", repr=False)
    # Accepted too while a webhook secret is being rotated.
    razorpay_webhook_secret_previous: str = field(default="", repr=False)
    razorpay_timeout_s: float = 5.0
    # An order not paid within this long expires and gives its stock back.
    payment_expiry_s: int = 900
    # Payments still created/authorized after this long are re-read from Razorpay.
    payment_reconcile_after_s: int = 120

    # Notification providers: "console" (the worker's log), or the real kind.
    email_provider: str = "smtp"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_sender: str = "Kirana <orders@kirana.local>"
    sms_provider: str = "http"
    sms_base_url: str = "http://127.0.0.1:9200"
    sms_api_key: str = field(default="kirana-sandbox-sms-key", repr=False)
    sms_sender_id: str = "KIRANA"
    push_provider: str = "http"
    push_base_url: str = "http://127.0.0.1:9200"
    push_server_key: str = field(default="kirana-sandbox-push-key", repr=False)
    notify_timeout_s: float = 5.0
    # Sends per recipient per hour, and per provider per second.
    notify_per_recipient_per_hour: int = 30
    notify_per_provider_per_second: int = 50

    # Backups (kirana.backups): where they go ("" means <KIRANA_DATA_DIR>/backups)
    # and how many prune keeps: the newest of each of the last N days and M weeks.
    backup_dir: str = ""
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4
    # Where finished backups are kept: "local" (BACKUP_DIR) or "s3" (a bucket; BACKUP_DIR is then
    # the staging area). S3 credentials come from boto3's chain (AWS_* env, instance role), never from here.
    backup_storage: str = "local"
    backup_s3_bucket: str = ""
    backup_s3_prefix: str = "kirana/backups"
    backup_s3_endpoint_url: str = ""  # MinIO, R2, ...; "" = AWS
    # Search (kirana.search): the Redis that holds the index ("" = REDIS_URL), and how many
    # marked products one indexer batch takes.
    search_redis_url: str = field(default="", repr=False)
    search_batch_size: int = 500
    # Loyalty (kirana.loyalty): points per order, what a point is worth at checkout.
    loyalty_paise_per_point: int = 1000  # 1 point per ₹10 paid
    # Categories that earn their points twice (one more point per ₹10), comma-separated.
    loyalty_bonus_categories: str = "Dairy,Dry Fruits"
    loyalty_first_order_bonus: int = 50
    loyalty_point_value_paise: int = 25  # a redeemed point takes ₹0.25 off
    # A leaderboard refresh counts ledger entries older than this; newer ones arrive incrementally.
    leaderboard_refresh_margin_s: int = 10
    # Bounded storage (kirana.retention): days finished records are kept, and how the daily prune
    # deletes them (records a command, pause between commands, commands per rule per run).
    retention_outbox_days: int = 7
    retention_webhook_days: int = 30  # well past Razorpay's 24 h of redeliveries: duplicates stay known
    retention_dead_letter_days: int = 30  # replayed and discarded ones; open ones stay
    retention_notification_attempt_days: int = 90
    retention_sync_days: int = 30
    retention_session_days: int = 30  # ended (revoked or expired) sessions, their spent tokens
    prune_batch: int = 1000
    prune_pause_s: float = 0.2
    prune_max_batches: int = 200
    # A bulk replay of dead letters sends at most this many a second (tasks.reliability.replay_selection).
    dead_letter_replay_per_s: float = 20.0

    @classmethod
    def from_env(cls) -> Settings:
        """Each field from its variable (ENV_NAMES) when that is set, else the default above."""
        values: dict[str, object] = {}
        for spec in fields(cls):
            name = ENV_NAMES[spec.name]
            raw = os.environ.get(name)
            if raw is not None:
                parsed = _PARSERS[str(spec.type)](name, raw)
                if parsed is not None:
                    values[spec.name] = _NORMALISE.get(spec.name, _same)(parsed)
        return cls(**values)  # type: ignore[arg-type]


def _number(kind: type[int] | type[float], what: str) -> Callable[[str, str], object]:
    def parse(name: str, raw: str) -> object:
        if raw == "":  # set but empty: the default, as if unset
            return None
        try:
            return kind(raw)
        except ValueError as exc:  # fail at start, not at the first order
            raise ValueError(f"{name} must be {what}, got {raw!r}") from exc

    return parse


# How a variable's text becomes a field's value, by the field's annotation.
_PARSERS: dict[str, Callable[[str, str], object]] = {
    "str": lambda name, raw: raw,
    "Path": lambda name, raw: Path(raw),
    "int": _number(int, "an integer"),
    "float": _number(float, "a number"),
}
# A field of another type would have no parser: fail at import, not at start-up in production.
assert {str(spec.type) for spec in fields(Settings)} <= set(_PARSERS), "a Settings field has a type without a parser"


def _same(value: object) -> object:
    return value


# Values put in one spelling as they are read.
_NORMALISE: dict[str, Callable[[object], object]] = {"log_level": lambda level: str(level).upper()}

# Each setting's environment variable is its field's name in capitals, but for these.
_ENV_OVERRIDES = {"data_dir": "KIRANA_DATA_DIR", "kirana_env": "KIRANA_ENV"}
# Environment variable for each field, for from_env, the README's configuration table
# and the test that keeps the two in step.
ENV_NAMES: dict[str, str] = {spec.name: _ENV_OVERRIDES.get(spec.name, spec.name.upper()) for spec in fields(Settings)}


@cache
def settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
