"""Devices: the apps a user is signed in on, and their push tokens.

A device is registered by its push token (one document per token, unique), so
registering the same token again updates it in place. A token refresh is a
registration that names the token it replaces: the device keeps its id (which
offline sync keys operations by) and only its token changes. A token the push
provider reports dead (FCM's NotRegistered) is forgotten, and a canonical
token the provider hands back replaces the old one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kirana.clock import now_ms, utcnow
from kirana.ids import new_id

DEVICES = "devices"


class Platform(StrEnum):
    ANDROID = "android"
    IOS = "ios"
    WEB = "web"


class DeviceNotFound(Exception):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device with id {device_id!r}")
        self.device_id = device_id


def register(db: Database, user_id: str, *, platform: Platform, token: str, app_version: str,
             replaces: str | None = None) -> dict[str, Any]:
    """Upsert the device holding `token` for `user_id`; with `replaces`, refresh that device's token.

    A token is one device: if it was registered by another user (a shared or
    resold phone), it now belongs to this one.
    """
    at = now_ms()
    fields = {"user_id": user_id, "platform": str(platform), "token": token, "app_version": app_version,
              "updated_at_ms": at}
    if replaces and replaces != token:
        # The new token may already be registered (the app retried): that document gives way.
        db[DEVICES].delete_one({"token": token, "user_id": user_id})
        try:
            refreshed = db[DEVICES].find_one_and_update({"token": replaces, "user_id": user_id},
                                                        {"$set": {**fields, "refreshed_at_ms": at}},
                                                        return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            refreshed = None  # another user's device holds the new token: register it as new below
        if refreshed is not None:
            return refreshed
    # Find, then insert: nx-27017 ignores $setOnInsert in an upserting find_one_and_update (it would
    # store an ObjectId id and no creation time), so the insert carries the whole new document.
    for _ in range(3):
        found = db[DEVICES].find_one_and_update({"token": token}, {"$set": fields},
                                                return_document=ReturnDocument.AFTER)
        if found is not None:
            return found
        device = {"_id": new_id("dev"), **fields, "created_at": utcnow(), "created_at_ms": at}
        try:
            db[DEVICES].insert_one(device)
        except DuplicateKeyError:
            continue  # registered a moment ago by a concurrent call: update that one
        return device
    raise RuntimeError("device registration kept colliding")  # pragma: no cover


def mine(db: Database, user_id: str) -> list[dict[str, Any]]:
    return sorted(db[DEVICES].find({"user_id": user_id}), key=lambda d: d["created_at_ms"])


def get(db: Database, user_id: str, device_id: str) -> dict[str, Any]:
    device = db[DEVICES].find_one({"_id": device_id, "user_id": user_id})
    if device is None:
        raise DeviceNotFound(device_id)
    return device


def remove(db: Database, user_id: str, device_id: str) -> bool:
    return db[DEVICES].delete_one({"_id": device_id, "user_id": user_id}).deleted_count == 1


def push_targets(db: Database, user_id: str) -> list[tuple[str, str]]:
    """(device id, push token) of each of the user's devices."""
    return [(d["_id"], d["token"]) for d in mine(db, user_id) if d.get("token")]


def forget_token(db: Database, token: str) -> bool:
    """The provider says the token is dead (the app was uninstalled): drop its device."""
    return db[DEVICES].delete_one({"token": token}).deleted_count == 1


def replace_token(db: Database, old: str, new: str) -> bool:
    """The provider answered with a canonical token for `old`: the device keeps its id, takes `new`."""
    if old == new:
        return False
    db[DEVICES].delete_one({"token": new})
    try:
        done = db[DEVICES].update_one({"token": old}, {"$set": {"token": new, "refreshed_at_ms": now_ms()}})
    except DuplicateKeyError:
        return False
    return done.modified_count == 1


def view(device: dict[str, Any]) -> dict[str, Any]:
    token = str(device["token"])
    return {
        "id": device["_id"], "platform": device["platform"], "app_version": device["app_version"],
        # Enough of the token for the user to tell devices apart; the whole token stays with us.
        "token_hint": f"…{token[-6:]}", "created_at_ms": device["created_at_ms"],
        "updated_at_ms": device["updated_at_ms"],
    }


def views(devices: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [view(d) for d in devices]
