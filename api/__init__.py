"""The Flask app factory: thin routes over kirana, enqueueing onto Celery."""

from __future__ import annotations

from flask import Flask

from api import health, orders, problems, products
from kirana.config import settings


def create_app() -> Flask:
    cfg = settings()
    app = Flask("kirana")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    problems.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(orders.bp)
    app.register_blueprint(products.bp)
    return app
