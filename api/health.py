"""/healthz (the process is up) and /readyz (it can do its job)."""

from __future__ import annotations

from typing import Any

import pymongo.errors
import redis.exceptions
from flask import Blueprint, Response, jsonify, request

from api.contract import documented
from api.problems import Problem
from api.responses import Healthy, Ready
from api.security import bearer_principal, public
from kirana import db, liveness, redis_conn, search
from kirana.config import settings
from kirana.permissions import allowed
from tasks.queues import DELIVERY
from workers.pools import POOLS

# A pool with queued work and no finished task for longer than its longest task is stuck.
STALL_AFTER_S = {queue.value: float(d.visibility_timeout_s) for queue, d in DELIVERY.items()}

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
@documented(ok={200: Healthy}, tags=("operations",))
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@public
@documented(ok={200: Ready}, tags=("operations",))
def readyz() -> Response:
    """MongoDB and Redis answer and every pool has a live worker (503 otherwise); the details only for ops."""
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
        health = liveness.pool_health(r, [p.name for p in POOLS], alive_window_s=settings().worker_alive_window_s,
                                      stall_after_s=STALL_AFTER_S)
        checks["pools"] = {pool: report["workers"] for pool, report in health.items()}
        checks["pool_health"] = health
        silent = [pool for pool, report in health.items() if report["verdict"] == "down"]
        stalled = [pool for pool, report in health.items() if report["verdict"] == "stalled"]
        if silent:
            reasons.append(f"no live worker in pool(s): {', '.join(silent)}")
        if stalled:
            reasons.append(f"pool(s) up but not consuming: {', '.join(stalled)}")
    except redis.exceptions.RedisError as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
        reasons.append("redis does not answer")
    if checks.get("mongodb") == "ok" and checks.get("redis") == "ok":
        checks["search"] = _search_detail()
    if not _for_ops():
        # Anonymous callers (load balancers, probes, anyone) learn ready or not; pool names,
        # worker counts and the index's figures are for ops.
        if reasons:
            raise Problem(503, "not-ready", "Not ready", "a dependency or a worker pool is down")
        return jsonify({"status": "ready", "checks": {}})
    if reasons:
        raise Problem(503, "not-ready", "Not ready", "; ".join(reasons), checks=checks)
    return jsonify({"status": "ready", "checks": checks})


def _for_ops() -> bool:
    """An ops or admin access token came with the request (a bad or missing one is not an error here)."""
    if not request.headers.get("Authorization"):
        return False
    try:
        return allowed(bearer_principal(), "audit:read")  # ops and admin, past their second factor
    except Problem:
        return False


def _search_detail() -> dict[str, Any] | str:
    """The index's version, size and lag: a detail for ops, not a reason to refuse traffic
    (a stale index still answers, and the search pool's own health is under pools)."""
    try:
        return search.stats(db.database())
    except (pymongo.errors.PyMongoError, redis.exceptions.RedisError) as exc:
        return f"unknown: {type(exc).__name__}"
