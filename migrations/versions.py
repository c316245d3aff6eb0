"""Every version of Kirana's database, in order.

The numbering of v1-v5 follows the seed's steps (base, access control,
payment tracking, gamification, mobile/offline sync); later work got the
next numbers. To change the schema, append a step: never edit one that
has been applied anywhere (`status` and `validate` report a changed
checksum). The indexes the last version declares must equal
kirana.db.INDEXES (tests/unit/test_migrations_declared.py), so an index
added to the code without a step, or a step without the code, fails a test.

v4 and v5 were declared before the loyalty and mobile code landed and got
their indexes when it did, before any database had applied them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from kirana.clock import now_ms
from migrations.backfill import PROGRESS, Context, backfill
from migrations.steps import Step, index


def _order_idempotency_key(db: Database, ctx: Context) -> None:
    # Orders placed before every order carried a key would all be `null` in a
    # unique index on MongoDB (docs/mongodb-subset.md); the code now writes
    # `auto:<order id>` for an order placed without a key, so do the same.
    def key(order: Mapping[str, Any]) -> str:
        return f"auto:{order['_id']}"

    changed = backfill(db, ctx, key="v8.orders.idempotency_key", collection="orders", missing="idempotency_key",
                       value=key)
    ctx.log(f"orders: idempotency_key set on {changed} order(s)")


def _order_history(db: Database, ctx: Context) -> None:
    # An order's events move into the order (`history.<status>[-<attempt>]`), so that a status
    # change and its event are one write. `order_events` stays as it was, an archive nothing
    # writes any more: v10 can be rolled back without loss, and a later step may drop it.
    def history(order: Mapping[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for event in db["order_events"].find({"order_id": order["_id"]}):
            status, _, attempt = event["_id"][len(order["_id"]) + 1:].partition(":")
            found[f"{status}-{attempt}" if attempt else status] = {
                "status": event["status"], "seq": event["seq"], "at_ms": event["at_ms"],
                **({"detail": event["detail"]} if event.get("detail") else {})}
        if not any(e["status"] == order["status"] for e in found.values()):
            # An order with no event for where it stands (written by hand, or by a run cut
            # short before v10): its status becomes its last event.
            at_ms = int(order.get("updated_at_ms") or order.get("created_at_ms") or 0)
            found[order["status"]] = {"status": order["status"], "seq": _SEQ.get(order["status"], 9), "at_ms": at_ms}
        return found

    changed = backfill(db, ctx, key="v10.orders.history", collection="orders", missing="history", value=history,
                       projection={"status": 1, "updated_at_ms": 1, "created_at_ms": 1})
    ctx.log(f"orders: history set on {changed} order(s)")


def _order_history_down(db: Database, ctx: Context) -> None:
    # Every event written since v10 goes back to `order_events` (the archive has the older
    # ones already: an insert that finds its id there is skipped), then `history` goes.
    moved = 0
    for order in db["orders"].find({"history": {"$exists": True}}, {"history": 1}):
        for key, entry in order["history"].items():
            status, _, attempt = key.partition("-")
            event_id = f"{order['_id']}:{status}" + (f":{attempt}" if attempt else "")
            done = db["order_events"].update_one(
                {"_id": event_id},
                {"$setOnInsert": {"order_id": order["_id"], "status": entry["status"], "seq": entry["seq"],
                                  "at_ms": entry["at_ms"],
                                  **({"detail": entry["detail"]} if "detail" in entry else {})}},
                upsert=True)
            moved += 1 if done.upserted_id is not None else 0
        db["orders"].update_one({"_id": order["_id"]}, {"$unset": {"history": ""}})
    db[PROGRESS].delete_one({"_id": "v10.orders.history"})  # so that the next up walks the orders again
    ctx.log(f"order_events: {moved} event(s) written back from orders.history")


# Position of each status in an order's life (kirana.orders._SEQ at v10), frozen here:
# a step's code must not change after it ran somewhere.
_SEQ = {"accepted": 0, "processing": 1, "reserved": 2, "awaiting_payment": 3, "payment_failed": 4,
        "confirmed": 5, "rejected": 5, "expired": 6, "cancelled": 6, "refund_pending": 7, "refunded": 8,
        "out_for_delivery": 7, "delivered": 8}


def _sessions_stored_in_clear(db: Database, ctx: Context) -> None:
    # Before v11's code, a session's refresh token was stored in clear after its first refresh
    # (and the next refresh failed). Such a session is ended: its holder logs in again, and the
    # database keeps no value a client could present. Ending a session cannot be rolled back,
    # and needs no roll back: down leaves them ended.
    ended = 0
    for session in list(db["sessions"].find({"revoked_at_ms": {"$exists": False}}, {"refresh_hash": 1})):
        stored = session.get("refresh_hash")
        # A hash is 64 hex digits (sha256); a token is 43 URL-safe characters. Frozen here, not
        # kirana.tokens's check: a step's code must not change after it ran somewhere.
        if not (isinstance(stored, str) and len(stored) == 64 and set(stored) <= set("0123456789abcdef")):
            done = db["sessions"].update_one({"_id": session["_id"], "revoked_at_ms": {"$exists": False}},
                                             {"$set": {"revoked_at_ms": now_ms(), "refresh_hash": "",
                                                       "revoked_reason": "refresh token stored in clear"}})
            ended += done.modified_count
    ctx.log(f"sessions: {ended} ended whose refresh token was stored in clear")


def _sessions_stored_in_clear_down(db: Database, ctx: Context) -> None:
    # The code before v11 reads hashed sessions as v11 writes them (its bug was in writing), so a
    # roll back has no data to change; the sessions v11 ended stay ended (reopening one would
    # reopen a token stored in clear).
    ctx.log("sessions: nothing to undo; the sessions v11 ended stay ended")


def _session_authority(db: Database, ctx: Context) -> None:
    # v12's code takes role, store and two-factor state from the session, not the token, and
    # remembers every rotated-away refresh token in refresh_tokens_spent. Open sessions get the
    # role and store of their account now (role changes end sessions, so they are current); one
    # whose account is gone is ended. The one rotated-away hash a session kept (previous_hash)
    # joins the spent tokens, so its reuse is still caught.
    filled = ended = spent = 0
    for session in list(db["sessions"].find({"revoked_at_ms": {"$exists": False}},
                                            {"user_id": 1, "previous_hash": 1, "expires_at_ms": 1})):
        user = db["users"].find_one({"_id": session["user_id"]}, {"role": 1, "store_id": 1})
        if user is None:
            done = db["sessions"].update_one({"_id": session["_id"], "revoked_at_ms": {"$exists": False}},
                                             {"$set": {"revoked_at_ms": now_ms(), "revoked_reason": "account gone"}})
            ended += done.modified_count
            continue
        db["sessions"].update_one({"_id": session["_id"]},
                                  {"$set": {"role": user.get("role", "customer"), "store_id": user.get("store_id")}})
        filled += 1
        if session.get("previous_hash"):
            db["refresh_tokens_spent"].update_one(
                {"_id": session["previous_hash"]},
                {"$set": {"session_id": session["_id"], "expires_at_ms": session.get("expires_at_ms", 0)}},
                upsert=True)
            spent += 1
    ctx.log(f"sessions: {filled} given their account's role and store, {ended} ended (account gone), "
            f"{spent} rotated-away refresh tokens remembered")


def _session_authority_down(db: Database, ctx: Context) -> None:
    # The code before v12 reads role and store from the token and ignores these fields, and its
    # reuse check reads previous_hash, which v12 leaves in place; the spent collection is dropped
    # with the step. Nothing else to undo.
    ctx.log("sessions: nothing to undo (role and store fields are ignored by the code before v12)")


def _webhook_dedupe_keys(db: Database, ctx: Context) -> None:
    # v13 deduplicates webhook events on what the signed body says as well as on the (unsigned)
    # event-id header. Every stored event gets its key before the unique index is built; frozen
    # here (not kirana.webhooks.dedupe_key), since a step's code must not change after it ran.
    # Two stored events with the same key (a body re-posted under a new id before v13) keep it
    # on the first; the later ones are keyed by their own id, as the duplicates they were.
    import hashlib
    import json

    seen: set[str] = set()
    keyed = 0
    for doc in db["webhook_events"].find({"dedupe_key": {"$exists": False}}, {"body": 1, "event": 1}).sort(
            "received_at_ms", 1):
        try:
            event = json.loads(doc.get("body") or "{}")
        except ValueError:
            event = {}
        key = ""
        payload = event.get("payload") if isinstance(event, dict) else None
        if isinstance(payload, dict):
            for name in sorted(payload):
                entity = payload[name].get("entity") if isinstance(payload[name], dict) else None
                if isinstance(entity, dict) and isinstance(entity.get("id"), str):
                    key = f"{doc.get('event')}:{name}:{entity['id']}:{entity.get('status', '')}"
                    break
        if not key:
            key = f"{doc.get('event')}:sha256:{hashlib.sha256((doc.get('body') or '').encode()).hexdigest()}"
        if key in seen or db["webhook_events"].find_one({"dedupe_key": key}, {"_id": 1}) is not None:
            key = f"{key}:dup:{doc['_id']}"
        seen.add(key)
        db["webhook_events"].update_one({"_id": doc["_id"]}, {"$set": {"dedupe_key": key}})
        keyed += 1
    ctx.log(f"webhook_events: {keyed} given their body's dedupe key")


def _webhook_dedupe_keys_down(db: Database, ctx: Context) -> None:
    # The index is dropped by the step; the code before v13 ignores the field, which stays.
    ctx.log("webhook_events: dedupe_key left in place (ignored by the code before v13)")


def _sync_by_user(db: Database, ctx: Context) -> None:
    # v15 keys sync operations by user and device (`<user>:<device>:<op>`, was `<device>:<op>`), so
    # a device that changes hands starts a stream of its own. Each operation moves to its new id
    # and keeps the order key it was placed under (`idempotency_key`): an operation applied
    # before, re-sent after, still finds its order. Batches name their operations by the new ids
    # and remember the id their client chose.
    moved = 0
    for op in list(db["sync_operations"].find({})):
        old = op["_id"]
        if old != f"{op['device_id']}:{op['op_id']}":
            continue  # keyed already
        new = f"{op['user_id']}:{op['device_id']}:{op['op_id']}"
        copy = {**op, "_id": new, "idempotency_key": op.get("idempotency_key") or f"sync:{old}"}
        if db["sync_operations"].find_one({"_id": new}, {"_id": 1}) is None:
            db["sync_operations"].insert_one(copy)
        db["sync_operations"].delete_one({"_id": old})
        moved += 1
    relinked = 0
    for batch in list(db["sync_batches"].find({}, {"op_keys": 1, "user_id": 1, "client_batch_id": 1})):
        keys = [k if k.startswith(f"{batch['user_id']}:") else f"{batch['user_id']}:{k}" for k in batch["op_keys"]]
        fields: dict[str, object] = {"op_keys": keys}
        if "client_batch_id" not in batch:
            fields["client_batch_id"] = None if str(batch["_id"]).startswith("syb_") else batch["_id"]
        db["sync_batches"].update_one({"_id": batch["_id"]}, {"$set": fields})
        relinked += 1
    ctx.log(f"sync: {moved} operations keyed by user and device, {relinked} batches relinked")


def _sync_by_user_down(db: Database, ctx: Context) -> None:
    # Back to `<device>:<op>`, where no other user's operation holds that id already (one that
    # does stays under its v15 id: the code before v15 then cannot tell the two apart, which is
    # the flaw v15 fixed).
    moved = 0
    for op in list(db["sync_operations"].find({})):
        old = f"{op['device_id']}:{op['op_id']}"
        if op["_id"] == old or db["sync_operations"].find_one({"_id": old}, {"_id": 1}) is not None:
            continue
        db["sync_operations"].insert_one({**op, "_id": old})
        db["sync_operations"].delete_one({"_id": op["_id"]})
        moved += 1
    for batch in list(db["sync_batches"].find({}, {"op_keys": 1, "user_id": 1})):
        keys = [k.removeprefix(f"{batch['user_id']}:") for k in batch["op_keys"]]
        db["sync_batches"].update_one({"_id": batch["_id"]}, {"$set": {"op_keys": keys}})
    ctx.log(f"sync: {moved} operations keyed by device again")



STEPS: list[Step] = [
    Step(1, "base: stores, catalogue, orders, reliability",
         collections=("stores", "products", "orders", "order_events", "job_runs", "outbox", "dead_letters"),
         indexes=(
             index("orders", "status", "created_at_ms"),
             index("orders", "customer_id", "created_at_ms"),
             index("orders", "store_id", "created_at_ms"),
             index("order_events", "order_id"),
             index("products", "store_id", "category", "sku"),
             index("products", "category"),
             index("outbox", "status", "due_at_ms"),
             index("outbox", "order_id"),
             index("dead_letters", "status", "last_failed_at_ms"),
             index("dead_letters", "task", "last_failed_at_ms"),
             index("dead_letters", "order_id"),
         )),
    Step(2, "access control: accounts, sessions, two-factor, audit log",
         collections=("users", "sessions", "two_factor", "recovery_codes", "sms_codes", "audit_log", "audit_head"),
         indexes=(
             index("users", "email", unique=True),
             index("sessions", "refresh_hash"),
             index("sessions", "previous_hash"),
             index("sessions", "user_id"),
             index("recovery_codes", "user_id"),
             index("audit_log", "event_id", unique=True),
             index("audit_log", "seq", unique=True),
             index("audit_log", "actor", "seq"),
             index("audit_log", "action", "seq"),
             index("audit_log", "at_ms"),
         )),
    Step(3, "payment tracking: payment attempts, webhook events, payment deadlines",
         collections=("payments", "webhook_events"),
         indexes=(
             index("orders", "status", "pay_by_ms"),
             index("payments", "razorpay_order_id"),
             index("payments", "razorpay_payment_id"),
             index("payments", "status", "created_at_ms"),
             index("webhook_events", "status", "received_at_ms"),
         )),
    Step(4, "gamification: loyalty ledger and accounts, achievements",
         collections=("loyalty_ledger", "loyalty_accounts", "achievements"),
         indexes=(
             index("loyalty_ledger", "customer_id", "created_at_ms"),
             index("loyalty_ledger", "order_id"),
             index("loyalty_ledger", "store_id", "at_ms"),
             index("loyalty_ledger", "city", "at_ms"),
             index("achievements", "customer_id"),
         )),
    Step(5, "mobile devices and offline sync, store analytics",
         collections=("devices", "carts", "sync_batches", "sync_operations", "store_analytics"),
         indexes=(
             index("devices", "token", unique=True),
             index("devices", "user_id"),
             index("sync_operations", "device_id", "status"),
             index("sync_batches", "status", "received_at_ms"),
             index("sync_batches", "device_id", "status"),
             index("store_analytics", "kind", "store_id", "day"),
             # The analytics scan and the loyalty sweep read orders by when they last changed.
             index("orders", "updated_at_ms"),
         )),
    Step(6, "notifications and delivery tracking",
         collections=("notifications", "notification_attempts", "notification_preferences", "delivery_locations"),
         indexes=(
             index("notifications", "user_id", "created_at_ms"),
             index("notification_attempts", "notification_id"),
             index("delivery_locations", "order_id", "at_ms"),
         )),
    Step(7, "backups catalog",
         collections=("backups",),
         indexes=(index("backups", "status", "finished_at_ms"),)),
    Step(8, "orders: an idempotency key on every order, then unique",
         indexes=(index("orders", "idempotency_key", unique=True),),
         data_up=_order_idempotency_key,
         irreversible="the keys it wrote cannot be told from the ones the code writes (both auto:<order id>), "
                      "and the code relies on every order having one"),
    Step(9, "search: products marked for the index, deletions not yet indexed, the synonym table",
         collections=("search_tombstones", "search_synonyms"),
         indexes=(
             index("products", "search_dirty_ms"),
             index("search_tombstones", "changed_at_ms"),
         )),
    Step(10, "orders: each order's events (history) and follow-ups (intents) in the order, written with its status",
         indexes=(index("orders", "intents_at_ms"),),
         data_up=_order_history, data_down=_order_history_down),
    Step(11, "sessions: end those whose refresh token was stored in clear",
         data_up=_sessions_stored_in_clear, data_down=_sessions_stored_in_clear_down),
    Step(12, "sessions: role and store held by the session; every rotated-away refresh token remembered",
         collections=("refresh_tokens_spent",),
         data_up=_session_authority, data_down=_session_authority_down),
    Step(13, "webhook events: deduplicated on what the signed body says, not only the event-id header",
         indexes=(index("webhook_events", "dedupe_key", unique=True),),
         data_up=_webhook_dedupe_keys, data_down=_webhook_dedupe_keys_down),
    Step(14, "two-factor enrolment tokens an admin issues to privileged accounts",
         collections=("enrolment_tokens",)),
    Step(15, "sync: operations and batches keyed by user and device, not by device alone",
         indexes=(index("sync_operations", "user_id", "device_id", "status"),
                  index("sync_batches", "user_id", "device_id", "status")),
         data_up=_sync_by_user, data_down=_sync_by_user_down),
    Step(16, "bounded storage: an index per prune rule, its guard and the age it reads (kirana/retention.py)",
         indexes=(
             index("outbox", "status", "sent_at_ms"),
             index("webhook_events", "status", "handled_at_ms"),
             index("dead_letters", "status", "replayed_at_ms"),
             index("dead_letters", "status", "discarded_at_ms"),
             index("notification_attempts", "at_ms"),
             index("sync_operations", "status", "applied_at_ms"),
             index("sync_batches", "status", "applied_at_ms"),
             index("sessions", "revoked_at_ms"),
             index("sessions", "expires_at_ms"),
             index("refresh_tokens_spent", "expires_at_ms"),
             index("enrolment_tokens", "expires_at_ms"),
         )),
]


HEAD = STEPS[-1].version
BY_VERSION = {step.version: step for step in STEPS}
assert [s.version for s in STEPS] == list(range(1, len(STEPS) + 1)), "versions are 1..N without gaps"
