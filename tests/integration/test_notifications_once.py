"""An event's notifications: stored in one insert, leased by it, sent once however often the trigger runs.

The provider is the one boundary faked here (an SMS gateway cannot run on this machine's loopback
in an integration test); MongoDB and Redis are the real servers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from kirana import notifications
from kirana.providers import Delivery, Message


@dataclass
class Gateway:
    name: str = "test-gateway"
    sent: list[Message] = field(default_factory=list)
    fail_next: int = 0

    def send(self, message: Message) -> Delivery:
        if self.fail_next:
            self.fail_next -= 1
            return Delivery(ok=False, retryable=True, response="503 try later", provider=self.name)
        self.sent.append(message)
        return Delivery(ok=True, retryable=False, response="200 queued", provider=self.name)


LIMITS = {"per_recipient_per_hour": 1000, "per_provider_per_second": 1000}


def _user(database) -> dict:  # type: ignore[no-untyped-def]
    user = {"_id": f"usr_{uuid.uuid4().hex[:10]}", "email": "asha@example.in", "phone": "+919800000001"}
    database["users"].insert_one(user)
    notifications.set_preferences(database, user["_id"], notifications.Preferences(
        channels={"sms": True, "email": True, "push": False, "in_app": True}))
    return user


PARAMS = {"order_id": "ord_1", "total_rupees": "10"}


def _run(database, redis_client, user, key: str, gateway: Gateway) -> list[str]:  # type: ignore[no-untyped-def]
    """One run of a trigger as tasks.notifications makes it: plan, send each, raise a transient failure last."""
    statuses, failed = [], None
    for planned in notifications.plan(database, user, "order_confirmed", PARAMS, key=key, lease_ms=60_000):
        try:
            statuses.append(notifications.send(database, redis_client, planned, gateway, **LIMITS).status)
        except notifications.SendFailed as exc:
            failed = exc
    if failed:
        raise failed
    return statuses


def test_a_trigger_run_three_times_stores_and_sends_each_channel_once(database, redis_client) -> None:  # type: ignore[no-untyped-def]
    user, gateway, key = _user(database), Gateway(), f"k-{uuid.uuid4().hex}"

    first = _run(database, redis_client, user, key, gateway)
    again = [_run(database, redis_client, user, key, gateway) for _ in range(2)]

    assert first == ["sent", "sent"]  # sms and email; in-app is stored read to show, not sent
    assert again == [[], []]
    assert sorted(m.channel for m in gateway.sent) == ["email", "sms"]
    assert database[notifications.NOTIFICATIONS].count_documents({"key": key}) == 3
    assert database[notifications.ATTEMPTS].count_documents({"user_id": user["_id"]}) == 2


def test_a_run_that_died_after_storing_leaves_its_sends_to_the_retry_once_the_lease_is_out(
        database, redis_client) -> None:  # type: ignore[no-untyped-def]
    user, gateway, key = _user(database), Gateway(), f"k-{uuid.uuid4().hex}"
    notifications.plan(database, user, "order_confirmed", PARAMS, key=key,
                       lease_ms=60_000)  # ... and the worker died here, before sending

    retried = notifications.plan(database, user, "order_confirmed", PARAMS, key=key, lease_ms=60_000)
    while_leased = [notifications.send(database, redis_client, p, gateway, **LIMITS).status for p in retried]
    database[notifications.NOTIFICATIONS].update_many({"key": key}, {"$set": {"lease_until_ms": 0}})  # time passes
    after = [notifications.send(database, redis_client, p, gateway, **LIMITS).status
             for p in notifications.plan(database, user, "order_confirmed", PARAMS, key=key, lease_ms=60_000)]

    assert [p.leased for p in retried] == [False, False]
    assert while_leased == ["busy", "busy"]  # the dead run's lease is honoured: no send while it may be live
    assert after == ["sent", "sent"]
    assert len(gateway.sent) == 2


def test_a_transient_failure_lets_the_lease_go_so_the_next_run_sends(database, redis_client) -> None:  # type: ignore[no-untyped-def]
    user, gateway, key = _user(database), Gateway(fail_next=1), f"k-{uuid.uuid4().hex}"

    with pytest.raises(notifications.SendFailed):
        _run(database, redis_client, user, key, gateway)
    retried = _run(database, redis_client, user, key, gateway)

    assert retried == ["sent"]  # the channel that failed; the other went in the first run
    assert sorted(m.channel for m in gateway.sent) == ["email", "sms"]
    assert database[notifications.ATTEMPTS].count_documents({"user_id": user["_id"], "ok": False}) == 1
