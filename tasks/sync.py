"""sync queue: apply offline batches, one device at a time, in client order (kirana.sync)."""

from __future__ import annotations

import contextlib
import json

import redis.exceptions

from kirana import db, locks, redis_conn, sync
from kirana.clock import now_ms
from kirana.config import settings
from tasks import orders as order_tasks
from tasks.app import app
from tasks.base import KiranaTask
from tasks.reliability import enqueue, run_once

SOFT_LIMIT_S = 50
HARD_LIMIT_S = 60
# The device lock outlives the hard limit, so a live run never loses it.
LOCK_TTL_S = 2 * HARD_LIMIT_S
OPS_PER_ROUND = 100
ROUNDS = 5
SWEEP_BATCH = 200


def user_channel(user_id: str) -> str:
    return f"kirana:user:{user_id}"


def _handlers() -> sync.Orders:
    database = db.database()
    return sync.Orders(
        submit=lambda new, key: order_tasks.submit(database, new, key)[0],
        cancel=lambda order_id: order_tasks.cancel(database, order_id, actor=_actor(order_id)).status,
    )


def _actor(order_id: str) -> str:
    order = db.database()["orders"].find_one({"_id": order_id}, {"customer_id": 1})
    return order["customer_id"] if order else "sync"


def _publish(batch: dict) -> None:
    """Best effort, like order updates: the results are stored, and GET /api/v1/sync/<id> shows them."""
    message = {"type": "sync", "batch_id": sync.public_id(batch), "status": batch["status"],
               "results": sync.results(db.database(), batch)}
    with contextlib.suppress(redis.exceptions.RedisError):
        redis_conn.client().publish(user_channel(batch["user_id"]), json.dumps(message, separators=(",", ":")))


@app.task(name="sync.apply", base=KiranaTask, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
def apply(batch_id: str) -> str:
    batch = db.database()[sync.BATCHES].find_one({"_id": batch_id}, {"user_id": 1, "device_id": 1})
    if batch is None:
        return "missing"
    return apply_device(batch["user_id"], batch["device_id"], batch_id)


def apply_device(user_id: str, device_id: str, batch_id: str) -> str:
    database = db.database()
    r = redis_conn.client()
    handlers = _handlers()
    for _ in range(ROUNDS):
        # Per user and device: a device handed to another user is a stream of its own.
        lock = locks.acquire(r, f"sync:{user_id}:{device_id}", LOCK_TTL_S)
        if lock is None:
            # The holder looks for pending operations again after it lets go, so it takes ours too.
            return "busy"
        try:
            sync.apply_device(database, user_id, device_id, handlers, limit=OPS_PER_ROUND)
            finished = sync.finish_batches(database, user_id, device_id)
        finally:
            locks.release(r, lock)
        for done in finished:
            _publish(done)
        if not sync.pending_ops(database, user_id, device_id):
            return "done"
    enqueue(apply, [batch_id])  # still more: another run, not an endless one
    return "more"


@app.task(name="sync.sweep", base=KiranaTask, soft_time_limit=20, time_limit=30)
@run_once("sync.sweep", ttl_s=60)
def sweep() -> int:
    """The safety net: batches still pending well after they arrived (a lost message) are applied again."""
    older_than = now_ms() - settings().sync_sweep_after_s * 1000
    devices: dict[tuple[str, str], str] = {}
    for batch in sync.stale_batches(db.database(), older_than, SWEEP_BATCH):
        devices.setdefault((batch["user_id"], batch["device_id"]), batch["_id"])
    for batch_id in devices.values():
        apply.delay(batch_id)
    return len(devices)
