"""tasks.orders.process run in this process (eager: one task body), on the real MongoDB wire protocol and Redis."""

from __future__ import annotations

import uuid

from kirana import db, fulfilment, orders
from kirana import db as collections
from kirana.clock import now_ms
from kirana.orders import NewOrder, OrderItem, PaymentMethod, Status
from tasks.orders import LEASE_MS, process


def _held_by_a_failed_run(token: str) -> str:
    """An accepted COD order whose run claimed it with `token`, then failed and could not give the claim up."""
    database = db.database()
    store = f"store-{uuid.uuid4().hex[:8]}"
    database[collections.STORES].insert_one({"_id": store, "name": "T", "city": "Pune"})
    database[collections.PRODUCTS].insert_one({"_id": f"{store}:ATTA", "store_id": store, "sku": "ATTA",
                                               "name": "Atta", "price_paise": 100, "stock": 5,
                                               "updated_at_ms": now_ms()})
    order_id = orders.place(database, NewOrder("cust-1", store, (OrderItem("ATTA", 2),), PaymentMethod.COD))[0]["_id"]
    orders.move(database, order_id, Status.ACCEPTED, Status.PROCESSING,
                fields={"claim": {"token": token, "until_ms": now_ms() + LEASE_MS}})
    return str(order_id)


def test_a_retry_finishes_the_order_its_run_claimed_and_another_delivery_leaves_it_alone(
        redis_server, mongo_server) -> None:  # type: ignore[no-untyped-def]
    order_id = _held_by_a_failed_run("run-1")

    # Another delivery of the message (a token of its own) must not take a live claim: it is told
    # until when the claim holds, and the task comes back then (a retry with that countdown).
    outcome = fulfilment.process_order(db.database(), order_id, lease_ms=LEASE_MS, pay_within_ms=LEASE_MS)
    assert (outcome.acted, outcome.status) == (False, "processing")
    assert outcome.busy_until_ms is not None and outcome.busy_until_ms > now_ms() + LEASE_MS - 5_000
    assert orders.get(db.database(), order_id)["claim"]["token"] == "run-1"

    # The run's retry carries its token (tasks.orders.process puts it in the retry's kwargs).
    assert process.apply(args=[order_id], kwargs={"claim_token": "run-1"}).get() == "confirmed"
    order = orders.get(db.database(), order_id)
    assert order["status"] == "confirmed" and "claim" not in order
    product = db.database()[collections.PRODUCTS].find_one({"_id": f"{order['store_id']}:ATTA"})
    assert product["stock"] == 3
