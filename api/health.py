"""/healthz (the process is up) and /readyz (it can do its job)."""

from __future__ import annotations

from typing import Any

import pymongo.errors
import redis.exceptions
from flask import Blueprint, Response, jsonify

from api.problems import Problem
from api.security import public
from kirana import db, liveness, redis_conn
from kirana.config import settings
from workers.pools import POOLS

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@public
def readyz() -> Response:
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        db.client().admin.command("ping")
        checks["mongodb"] = "ok"
    except pymongo.errors.PyMongoError as exc:
        checks["mongodb"] = f"down: {type(exc).__name__}"
        reasons.append("mongodb does not answer")
    try:
        r = redis_conn.client()
        r.ping()
        checks["redis"] = "ok"
        alive = liveness.alive(r, [p.name for p in POOLS], settings().worker_alive_window_s)
        checks["pools"] = alive
        silent = [pool for pool, n in alive.items() if n == 0]
        if silent:
            reasons.append(f"no live worker in pool(s): {', '.join(silent)}")
    except redis.exceptions.RedisError as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
        reasons.append("redis does not answer")
    if reasons:
        raise Problem(503, "not-ready", "Not ready", "; ".join(reasons), checks=checks)
    return jsonify({"status": "ready", "checks": checks})
