"""Every pymongo operation Kirana relies on, checked against the server in use.

The embedded nx-27017 server was seen to mishandle some operations silently,
so each operation the code uses is exercised here with the result MongoDB 7
gives. Run with MONGO_URL pointing at a real MongoDB to compare.
"""

from __future__ import annotations

import datetime as dt

import pymongo
import pytest
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from kirana import db as collections
from kirana import seed


def test_unique_index_refuses_a_duplicate(database) -> None:  # type: ignore[no-untyped-def]
    orders = database[collections.ORDERS]
    orders.insert_one({"_id": "a", "idempotency_key": "k"})
    with pytest.raises(DuplicateKeyError):
        orders.insert_one({"_id": "b", "idempotency_key": "k"})
    with pytest.raises(DuplicateKeyError):
        orders.insert_one({"_id": "a", "idempotency_key": "other"})
    assert orders.count_documents({}) == 1


def test_every_declared_index_exists_with_its_keys_and_uniqueness(database) -> None:  # type: ignore[no-untyped-def]
    # Compared by keys: the embedded server names indexes itself.
    for collection, keys, options in collections.INDEXES:
        found = collections.index_keys(database, collection)
        assert found.get(tuple(keys)) == bool(options.get("unique")), (collection, keys, found)


def test_guarded_find_one_and_update_with_inc_set_and_dotted_exists(database) -> None:  # type: ignore[no-untyped-def]
    products = database[collections.PRODUCTS]
    products.insert_one({"_id": "p", "stock": 5})
    guard = {"_id": "p", "stock": {"$gte": 3}, "holds.o1": {"$exists": False}}
    change = {"$inc": {"stock": -3}, "$set": {"holds.o1": 3, "updated_at_ms": 1}}

    after = products.find_one_and_update(guard, change, return_document=ReturnDocument.AFTER)
    again = products.find_one_and_update(guard, change, return_document=ReturnDocument.AFTER)
    short = products.find_one_and_update({"_id": "p", "stock": {"$gte": 3}}, {"$inc": {"stock": -3}})

    assert after == {"_id": "p", "stock": 2, "holds": {"o1": 3}, "updated_at_ms": 1}
    assert again is None and short is None
    assert products.find_one({"_id": "p", "holds.o1": {"$exists": True}}, {"holds": 1}) == {"_id": "p",
                                                                                            "holds": {"o1": 3}}
    assert products.find_one({"_id": "p"}, {"holds": 0}) == {"_id": "p", "stock": 2, "updated_at_ms": 1}


def test_update_one_with_dotted_equality_guard_and_unset(database) -> None:  # type: ignore[no-untyped-def]
    products = database[collections.PRODUCTS]
    products.insert_one({"_id": "p", "stock": 2, "holds": {"o1": 3, "o2": 1}})

    wrong = products.update_one({"_id": "p", "holds.o1": 4}, {"$inc": {"stock": 4}})
    right = products.update_one({"_id": "p", "holds.o1": 3}, {"$inc": {"stock": 3}, "$unset": {"holds.o1": ""}})

    assert (wrong.modified_count, right.modified_count) == (0, 1)
    assert products.find_one({"_id": "p"}) == {"_id": "p", "stock": 5, "holds": {"o2": 1}}


def test_compare_and_set_on_status_with_a_nested_guard_and_unset(database) -> None:  # type: ignore[no-untyped-def]
    orders = database[collections.ORDERS]
    orders.insert_one({"_id": "o", "status": "processing", "claim": {"token": "t", "until_ms": 10}})

    lost = orders.find_one_and_update({"_id": "o", "status": "processing", "claim.token": "x"},
                                      {"$set": {"status": "confirmed"}})
    expired = orders.find_one({"_id": "o", "claim.until_ms": {"$lt": 11}})
    won = orders.find_one_and_update(
        {"_id": "o", "status": "processing", "claim.token": "t"},
        {"$set": {"status": "confirmed", "lines": [{"sku": "A", "qty": 1}], "total_paise": 100},
         "$unset": {"claim": ""}},
        return_document=ReturnDocument.AFTER,
    )

    assert lost is None and expired is not None
    assert won == {"_id": "o", "status": "confirmed", "lines": [{"sku": "A", "qty": 1}], "total_paise": 100}


def test_find_with_in_lt_sort_skip_limit_projection_and_count(database) -> None:  # type: ignore[no-untyped-def]
    orders = database[collections.ORDERS]
    orders.insert_many([{"_id": f"o{i}", "status": ["accepted", "confirmed", "processing"][i % 3],
                         "created_at_ms": 100 - i} for i in range(9)])

    found = list(orders.find({"status": {"$in": ["accepted", "processing"]}, "created_at_ms": {"$lt": 99}},
                             {"_id": 1}).sort("created_at_ms", 1).limit(3))
    page = list(orders.find({}).sort("_id", 1).skip(2).limit(3))

    assert found == [{"_id": "o8"}, {"_id": "o6"}, {"_id": "o5"}]
    assert [o["_id"] for o in page] == ["o2", "o3", "o4"]
    assert orders.count_documents({"status": "confirmed"}) == 3
    assert orders.estimated_document_count() == 9


def test_delete_one_and_many_with_guards(database) -> None:  # type: ignore[no-untyped-def]
    orders, events = database[collections.ORDERS], database[collections.ORDER_EVENTS]
    orders.insert_one({"_id": "o", "status": "processing"})
    events.insert_many([{"_id": "o:accepted", "order_id": "o"}, {"_id": "o:processing", "order_id": "o"}])

    assert orders.delete_one({"_id": "o", "status": "accepted"}).deleted_count == 0
    assert events.delete_many({"order_id": "o"}).deleted_count == 2


def test_datetimes_on_insert_round_trip_as_utc(database) -> None:  # type: ignore[no-untyped-def]
    at = dt.datetime(2026, 11, 28, 10, 30, 15, 123000, tzinfo=dt.UTC)
    database[collections.ORDER_EVENTS].insert_one({"_id": "e", "at": at, "at_ms": 5})
    assert database[collections.ORDER_EVENTS].find_one({"_id": "e"})["at"] == at


def test_bulk_upsert_with_set_on_insert_keeps_existing_fields(database) -> None:  # type: ignore[no-untyped-def]
    products = database[collections.PRODUCTS]
    op = pymongo.UpdateOne({"_id": "p"}, {"$set": {"price_paise": 10}, "$setOnInsert": {"stock": 5}}, upsert=True)
    first = products.bulk_write([op], ordered=False)
    products.update_one({"_id": "p"}, {"$inc": {"stock": -2}})
    op2 = pymongo.UpdateOne({"_id": "p"}, {"$set": {"price_paise": 12}, "$setOnInsert": {"stock": 5}}, upsert=True)
    second = products.bulk_write([op2], ordered=False)

    assert (first.upserted_count, second.upserted_count) == (1, 0)
    assert products.find_one({"_id": "p"}) == {"_id": "p", "price_paise": 12, "stock": 3}


def test_seeding_twice_keeps_stock_and_adds_nothing(database) -> None:  # type: ignore[no-untyped-def]
    first = seed.seed(database)
    some = database[collections.PRODUCTS].find_one({"stock": {"$gte": 2}})
    database[collections.PRODUCTS].update_one({"_id": some["_id"]}, {"$inc": {"stock": -2}})

    second = seed.seed(database)

    assert first["inserted"] == first["products"] >= 1000 and second["inserted"] == 0
    assert database[collections.PRODUCTS].count_documents({}) == first["products"]
    assert database[collections.PRODUCTS].find_one({"_id": some["_id"]})["stock"] == some["stock"] - 2


def test_guarded_upsert_find_one_and_delete_update_many_and_counting_with_a_limit(database) -> None:  # type: ignore[no-untyped-def]
    # kirana.two_factor, kirana.tokens: upsert unless enabled, delete-if-matches, revoke all.
    docs = database["two_factor"]
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    docs.update_one({"_id": "u", "enabled": {"$ne": True}}, {"$set": {"pending": "s1"}, "$setOnInsert": {"at": at}},
                    upsert=True)
    docs.update_one({"_id": "u"}, {"$set": {"enabled": True}})
    with pytest.raises(DuplicateKeyError):  # enabled: the guarded upsert tries to insert, and collides
        docs.update_one({"_id": "u", "enabled": {"$ne": True}}, {"$set": {"pending": "s2"}}, upsert=True)
    assert docs.find_one({"_id": "u"}) == {"_id": "u", "pending": "s1", "at": at, "enabled": True}

    codes = database["sms_codes"]
    codes.insert_one({"_id": "u", "hash": "h", "expires_at_ms": 100})
    assert codes.find_one_and_delete({"_id": "u", "hash": "x"}) is None
    assert codes.find_one_and_delete({"_id": "u", "hash": "h", "expires_at_ms": {"$gt": 50}})["_id"] == "u"
    assert codes.count_documents({}) == 0

    sessions = database["sessions"]
    sessions.insert_many([{"_id": f"s{i}", "user_id": "u"} for i in range(3)] + [{"_id": "s9", "user_id": "v",
                                                                                  "revoked_at_ms": 1}])
    revoked = sessions.update_many({"user_id": "u", "revoked_at_ms": {"$exists": False}},
                                   {"$set": {"revoked_at_ms": 5}})
    assert revoked.modified_count == 3
    assert sessions.count_documents({"revoked_at_ms": 5}, limit=1) == 1


def test_a_guarded_inc_keyed_by_an_entry_id_with_colons_applies_once(database) -> None:  # type: ignore[no-untyped-def]
    """kirana.loyalty.ledger: `applied.<order>:<rule>` guards the balance; `balance >= n` guards a redemption."""
    accounts = database["loyalty_accounts"]
    accounts.insert_one({"_id": "c", "balance": 0, "applied": {}})
    for _ in range(2):
        accounts.update_one({"_id": "c", "applied.ord_1:base": {"$exists": False}},
                            {"$inc": {"balance": 30}, "$set": {"applied.ord_1:base": 1}})
    assert accounts.find_one({"_id": "c"})["balance"] == 30
    spend = {"$inc": {"balance": -20}, "$set": {"applied.ord_2:redeem": 2}}
    assert accounts.find_one_and_update({"_id": "c", "balance": {"$gte": 20}}, spend) is not None
    assert accounts.find_one_and_update({"_id": "c", "balance": {"$gte": 20}}, spend) is None
    assert accounts.find_one({"_id": "c"}) == {"_id": "c", "balance": 10, "applied": {"ord_1:base": 1,
                                                                                      "ord_2:redeem": 2}}


def test_bulk_updates_of_hundreds_are_sent_in_commands_the_server_finishes(database) -> None:  # type: ignore[no-untyped-def]
    """FerretDB 1.24 (SQLite) deadlocks on one `update` command of more than 100 statements
    over existing documents (each statement's cursor stays open until the command ends, from a
    pool of 100). kirana.db.bulk_update sends at most MAX_UPDATES_PER_COMMAND per command."""
    items = database["bulk"]
    n = 2 * collections.MAX_UPDATES_PER_COMMAND + 50
    ops = [pymongo.UpdateOne({"_id": f"p{i}"}, {"$set": {"v": 1}, "$setOnInsert": {"stock": 5}}, upsert=True)
           for i in range(n)]

    first = collections.bulk_update(items, ops)
    again = collections.bulk_update(items, ops)  # over existing documents: what deadlocked
    changed = collections.bulk_update(items, [pymongo.UpdateOne({"_id": f"p{i}"}, {"$inc": {"stock": -1}})
                                              for i in range(n)])

    assert (first.upserted, again.upserted, again.matched, again.modified) == (n, 0, n, 0)
    assert (changed.matched, changed.modified) == (n, n)
    assert items.count_documents({"stock": 4}) == n
