"""Every setting Kirana reads, in one place.

Settings come from environment variables; each default fits the embedded
stack that `make run` and the tests start, so nothing needs configuring to
try Kirana, and production sets only what differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:  # fail at start, not at the first order
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment. Build with `Settings.from_env()`.

    Secrets are fields with repr=False, so a logged Settings never shows them.
    """

    redis_url: str = "redis://127.0.0.1:6390/0"
    mongo_url: str = "mongodb://127.0.0.1:27027"
    mongo_db: str = "kirana"
    # How long a request waits for MongoDB or Redis before answering 503.
    mongo_timeout_ms: int = 2000
    redis_timeout_s: float = 2.0

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    api_threads: int = 8
    # The WebSocket server (gevent): 0 means API_PORT + 1, so parallel stacks do not collide.
    ws_port: int = 0
    # Open WebSockets check their token again this often: logout and expiry end them within it.
    ws_reauth_s: float = 60.0
    ws_workers: int = 1
    ws_worker_connections: int = 5000
    flower_port: int = 5555
    flower_basic_auth: str = field(default="ops:kirana-dev", repr=False)
    # celery-exporter (Celery metrics for Prometheus), started by `make run`.
    exporter_port: int = 9808

    data_dir: Path = field(default_factory=lambda: ROOT / "var")
    # JSON log lines (kirana/logs.py) at this level, from the API, workers, beat and the relay.
    log_level: str = "INFO"

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
    login_max_failures_account: int = 5
    login_max_failures_address: int = 20
    login_failure_window_s: int = 900
    login_lockout_s: int = 900
    sms_otp_per_window: int = 3
    sms_otp_window_s: int = 600
    sms_otp_ttl_s: int = 300
    totp_issuer: str = "Kirana"

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

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=_env("REDIS_URL", cls.redis_url),
            mongo_url=_env("MONGO_URL", cls.mongo_url),
            mongo_db=_env("MONGO_DB", cls.mongo_db),
            mongo_timeout_ms=_int("MONGO_TIMEOUT_MS", cls.mongo_timeout_ms),
            redis_timeout_s=_float("REDIS_TIMEOUT_S", cls.redis_timeout_s),
            api_host=_env("API_HOST", cls.api_host),
            api_port=_int("API_PORT", cls.api_port),
            api_workers=_int("API_WORKERS", cls.api_workers),
            log_level=_env("LOG_LEVEL", cls.log_level).upper(),
            api_threads=_int("API_THREADS", cls.api_threads),
            ws_port=_int("WS_PORT", cls.ws_port),
            ws_reauth_s=_float("WS_REAUTH_S", cls.ws_reauth_s),
            ws_workers=_int("WS_WORKERS", cls.ws_workers),
            ws_worker_connections=_int("WS_WORKER_CONNECTIONS", cls.ws_worker_connections),
            flower_port=_int("FLOWER_PORT", cls.flower_port),
            flower_basic_auth=_env("FLOWER_BASIC_AUTH", cls.flower_basic_auth),
            exporter_port=_int("EXPORTER_PORT", cls.exporter_port),
            data_dir=Path(_env("KIRANA_DATA_DIR", str(ROOT / "var"))),
            max_body_bytes=_int("MAX_BODY_BYTES", cls.max_body_bytes),
            max_order_items=_int("MAX_ORDER_ITEMS", cls.max_order_items),
            max_item_qty=_int("MAX_ITEM_QTY", cls.max_item_qty),
            visibility_timeout_s=_int("VISIBILITY_TIMEOUT_S", cls.visibility_timeout_s),
            retry_backoff_max_s=_int("RETRY_BACKOFF_MAX_S", cls.retry_backoff_max_s),
            task_max_retries=_int("TASK_MAX_RETRIES", cls.task_max_retries),
            redelivery_cap=_int("REDELIVERY_CAP", cls.redelivery_cap),
            worker_heartbeat_s=_float("WORKER_HEARTBEAT_S", cls.worker_heartbeat_s),
            worker_alive_window_s=_float("WORKER_ALIVE_WINDOW_S", cls.worker_alive_window_s),
            stuck_order_after_s=_int("STUCK_ORDER_AFTER_S", cls.stuck_order_after_s),
            sync_max_ops=_int("SYNC_MAX_OPS", cls.sync_max_ops),
            sync_sweep_after_s=_int("SYNC_SWEEP_AFTER_S", cls.sync_sweep_after_s),
            analytics_timezone=_env("ANALYTICS_TIMEZONE", cls.analytics_timezone),
            analytics_batch=_int("ANALYTICS_BATCH", cls.analytics_batch),
            token_secret=_env("TOKEN_SECRET", cls.token_secret),
            access_token_ttl_s=_int("ACCESS_TOKEN_TTL_S", cls.access_token_ttl_s),
            refresh_token_ttl_s=_int("REFRESH_TOKEN_TTL_S", cls.refresh_token_ttl_s),
            login_max_failures_account=_int("LOGIN_MAX_FAILURES_ACCOUNT", cls.login_max_failures_account),
            login_max_failures_address=_int("LOGIN_MAX_FAILURES_ADDRESS", cls.login_max_failures_address),
            login_failure_window_s=_int("LOGIN_FAILURE_WINDOW_S", cls.login_failure_window_s),
            login_lockout_s=_int("LOGIN_LOCKOUT_S", cls.login_lockout_s),
            sms_otp_per_window=_int("SMS_OTP_PER_WINDOW", cls.sms_otp_per_window),
            sms_otp_window_s=_int("SMS_OTP_WINDOW_S", cls.sms_otp_window_s),
            sms_otp_ttl_s=_int("SMS_OTP_TTL_S", cls.sms_otp_ttl_s),
            totp_issuer=_env("TOTP_ISSUER", cls.totp_issuer),
            razorpay_base_url=_env("RAZORPAY_BASE_URL", cls.razorpay_base_url),
            razorpay_key_id=_env("RAZORPAY_KEY_ID", cls.razorpay_key_id),
            razorpay_key_secret=_env("RAZORPAY_KEY_SECRET", cls.razorpay_key_secret),
            razorpay_webhook_secret=_env("RAZORPAY_WEBHOOK_SECRET", cls.razorpay_webhook_secret),
            razorpay_webhook_secret_previous=_env("RAZORPAY_WEBHOOK_SECRET_PREVIOUS",
                                                  cls.razorpay_webhook_secret_previous),
            razorpay_timeout_s=_float("RAZORPAY_TIMEOUT_S", cls.razorpay_timeout_s),
            payment_expiry_s=_int("PAYMENT_EXPIRY_S", cls.payment_expiry_s),
            payment_reconcile_after_s=_int("PAYMENT_RECONCILE_AFTER_S", cls.payment_reconcile_after_s),
            email_provider=_env("EMAIL_PROVIDER", cls.email_provider),
            smtp_host=_env("SMTP_HOST", cls.smtp_host),
            smtp_port=_int("SMTP_PORT", cls.smtp_port),
            smtp_sender=_env("SMTP_SENDER", cls.smtp_sender),
            sms_provider=_env("SMS_PROVIDER", cls.sms_provider),
            sms_base_url=_env("SMS_BASE_URL", cls.sms_base_url),
            sms_api_key=_env("SMS_API_KEY", cls.sms_api_key),
            sms_sender_id=_env("SMS_SENDER_ID", cls.sms_sender_id),
            push_provider=_env("PUSH_PROVIDER", cls.push_provider),
            push_base_url=_env("PUSH_BASE_URL", cls.push_base_url),
            push_server_key=_env("PUSH_SERVER_KEY", cls.push_server_key),
            notify_timeout_s=_float("NOTIFY_TIMEOUT_S", cls.notify_timeout_s),
            notify_per_recipient_per_hour=_int("NOTIFY_PER_RECIPIENT_PER_HOUR", cls.notify_per_recipient_per_hour),
            notify_per_provider_per_second=_int("NOTIFY_PER_PROVIDER_PER_SECOND", cls.notify_per_provider_per_second),
            backup_dir=_env("BACKUP_DIR", cls.backup_dir),
            backup_keep_daily=_int("BACKUP_KEEP_DAILY", cls.backup_keep_daily),
            backup_keep_weekly=_int("BACKUP_KEEP_WEEKLY", cls.backup_keep_weekly),
            backup_storage=_env("BACKUP_STORAGE", cls.backup_storage),
            backup_s3_bucket=_env("BACKUP_S3_BUCKET", cls.backup_s3_bucket),
            backup_s3_prefix=_env("BACKUP_S3_PREFIX", cls.backup_s3_prefix),
            backup_s3_endpoint_url=_env("BACKUP_S3_ENDPOINT_URL", cls.backup_s3_endpoint_url),
            search_redis_url=_env("SEARCH_REDIS_URL", cls.search_redis_url),
            search_batch_size=_int("SEARCH_BATCH_SIZE", cls.search_batch_size),
            loyalty_paise_per_point=_int("LOYALTY_PAISE_PER_POINT", cls.loyalty_paise_per_point),
            loyalty_bonus_categories=_env("LOYALTY_BONUS_CATEGORIES", cls.loyalty_bonus_categories),
            loyalty_first_order_bonus=_int("LOYALTY_FIRST_ORDER_BONUS", cls.loyalty_first_order_bonus),
            loyalty_point_value_paise=_int("LOYALTY_POINT_VALUE_PAISE", cls.loyalty_point_value_paise),
            leaderboard_refresh_margin_s=_int("LEADERBOARD_REFRESH_MARGIN_S", cls.leaderboard_refresh_margin_s),
        )


# Environment variable for each field, for the README's configuration table
# and the test that keeps the two in step.
ENV_NAMES: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "mongo_url": "MONGO_URL",
    "mongo_db": "MONGO_DB",
    "mongo_timeout_ms": "MONGO_TIMEOUT_MS",
    "redis_timeout_s": "REDIS_TIMEOUT_S",
    "api_host": "API_HOST",
    "api_port": "API_PORT",
    "api_workers": "API_WORKERS",
    "api_threads": "API_THREADS",
    "ws_port": "WS_PORT",
    "ws_reauth_s": "WS_REAUTH_S",
    "ws_workers": "WS_WORKERS",
    "ws_worker_connections": "WS_WORKER_CONNECTIONS",
    "flower_port": "FLOWER_PORT",
    "flower_basic_auth": "FLOWER_BASIC_AUTH",
    "exporter_port": "EXPORTER_PORT",
    "data_dir": "KIRANA_DATA_DIR",
    "log_level": "LOG_LEVEL",
    "max_body_bytes": "MAX_BODY_BYTES",
    "max_order_items": "MAX_ORDER_ITEMS",
    "max_item_qty": "MAX_ITEM_QTY",
    "visibility_timeout_s": "VISIBILITY_TIMEOUT_S",
    "retry_backoff_max_s": "RETRY_BACKOFF_MAX_S",
    "task_max_retries": "TASK_MAX_RETRIES",
    "redelivery_cap": "REDELIVERY_CAP",
    "worker_heartbeat_s": "WORKER_HEARTBEAT_S",
    "worker_alive_window_s": "WORKER_ALIVE_WINDOW_S",
    "stuck_order_after_s": "STUCK_ORDER_AFTER_S",
    "sync_max_ops": "SYNC_MAX_OPS",
    "sync_sweep_after_s": "SYNC_SWEEP_AFTER_S",
    "analytics_timezone": "ANALYTICS_TIMEZONE",
    "analytics_batch": "ANALYTICS_BATCH",
    "token_secret": "TOKEN_SECRET",
    "access_token_ttl_s": "ACCESS_TOKEN_TTL_S",
    "refresh_token_ttl_s": "REFRESH_TOKEN_TTL_S",
    "login_max_failures_account": "LOGIN_MAX_FAILURES_ACCOUNT",
    "login_max_failures_address": "LOGIN_MAX_FAILURES_ADDRESS",
    "login_failure_window_s": "LOGIN_FAILURE_WINDOW_S",
    "login_lockout_s": "LOGIN_LOCKOUT_S",
    "sms_otp_per_window": "SMS_OTP_PER_WINDOW",
    "sms_otp_window_s": "SMS_OTP_WINDOW_S",
    "sms_otp_ttl_s": "SMS_OTP_TTL_S",
    "totp_issuer": "TOTP_ISSUER",
    "razorpay_base_url": "RAZORPAY_BASE_URL",
    "razorpay_key_id": "RAZORPAY_KEY_ID",
    "razorpay_key_secret": "RAZORPAY_KEY_SECRET",
    "razorpay_webhook_secret": "RAZORPAY_WEBHOOK_SECRET",
    "razorpay_webhook_secret_previous": "RAZORPAY_WEBHOOK_SECRET_PREVIOUS",
    "razorpay_timeout_s": "RAZORPAY_TIMEOUT_S",
    "payment_expiry_s": "PAYMENT_EXPIRY_S",
    "payment_reconcile_after_s": "PAYMENT_RECONCILE_AFTER_S",
    "email_provider": "EMAIL_PROVIDER",
    "smtp_host": "SMTP_HOST",
    "smtp_port": "SMTP_PORT",
    "smtp_sender": "SMTP_SENDER",
    "sms_provider": "SMS_PROVIDER",
    "sms_base_url": "SMS_BASE_URL",
    "sms_api_key": "SMS_API_KEY",
    "sms_sender_id": "SMS_SENDER_ID",
    "push_provider": "PUSH_PROVIDER",
    "push_base_url": "PUSH_BASE_URL",
    "push_server_key": "PUSH_SERVER_KEY",
    "notify_timeout_s": "NOTIFY_TIMEOUT_S",
    "notify_per_recipient_per_hour": "NOTIFY_PER_RECIPIENT_PER_HOUR",
    "notify_per_provider_per_second": "NOTIFY_PER_PROVIDER_PER_SECOND",
    "backup_dir": "BACKUP_DIR",
    "backup_keep_daily": "BACKUP_KEEP_DAILY",
    "backup_keep_weekly": "BACKUP_KEEP_WEEKLY",
    "backup_storage": "BACKUP_STORAGE",
    "backup_s3_bucket": "BACKUP_S3_BUCKET",
    "backup_s3_prefix": "BACKUP_S3_PREFIX",
    "backup_s3_endpoint_url": "BACKUP_S3_ENDPOINT_URL",
    "search_redis_url": "SEARCH_REDIS_URL",
    "search_batch_size": "SEARCH_BATCH_SIZE",
    "loyalty_paise_per_point": "LOYALTY_PAISE_PER_POINT",
    "loyalty_bonus_categories": "LOYALTY_BONUS_CATEGORIES",
    "loyalty_first_order_bonus": "LOYALTY_FIRST_ORDER_BONUS",
    "loyalty_point_value_paise": "LOYALTY_POINT_VALUE_PAISE",
    "leaderboard_refresh_margin_s": "LEADERBOARD_REFRESH_MARGIN_S",
}
assert set(ENV_NAMES) == {f.name for f in fields(Settings)}


@cache
def settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
