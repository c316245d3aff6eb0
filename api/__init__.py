"""The Flask app factory: thin routes over kirana, enqueueing onto Celery."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from api import (
    analytics,
    audit,
    auth,
    backups,
    carts,
    dead_letters,
    deliveries,
    devices,
    docs,
    health,
    live,
    loyalty,
    metrics,
    notifications,
    orders,
    payments,
    problems,
    products,
    search,
    security,
    sync,
    tracing,
    users,
    webhooks,
)
from kirana import preflight
from kirana.config import settings


def create_app() -> Flask:
    cfg = settings()
    preflight.check(cfg, process="api")
    # No static folder: every route is declared, and Flask's static route would not be.
    app = Flask("kirana", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    if cfg.trusted_proxy_hops > 0:
        # Only the configured number of proxies' X-Forwarded-* are believed: by default none, so a
        # client cannot choose its own address (the lockout and the audit log's ip read it).
        hops = cfg.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    tracing.register(app)
    problems.register(app)
    metrics.instrument(app)  # before security.enforce, so refused requests are timed and counted too
    app.before_request(security.enforce)
    origins = [o.strip() for o in cfg.cors_allowed_origins.split(",") if o.strip()]
    if origins:
        # Only the listed origins, never "*"; tokens travel in the Authorization header, not cookies.
        CORS(app, origins=origins, supports_credentials=False, expose_headers=["Retry-After", "Location"],
             allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"], max_age=600)
    app.register_blueprint(health.bp)
    app.register_blueprint(orders.bp)
    app.register_blueprint(products.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(payments.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(dead_letters.bp)
    app.register_blueprint(dead_letters.actions)
    app.register_blueprint(metrics.bp)
    # /ws/orders/<id>: served by the gevent `ws` process (stack.commands.ws_command).
    app.register_blueprint(live.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(notifications.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(backups.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(carts.bp)
    app.register_blueprint(sync.bp)
    app.register_blueprint(analytics.bp)
    app.register_blueprint(search.bp)
    app.register_blueprint(loyalty.bp)
    return app
