"""The search index against real Redis and nx-27017: writes reach it through the marks, builds flip atomically."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pymongo.database import Database

from kirana import catalog, search, seed
from kirana import db as collections
from kirana.search import dirty, index, synonyms

STORE = seed.STORES[0]["_id"]


def _find(database: Database, q: str, sort: str = "relevance", **filters: Any) -> search.Result:
    return search.search(database, q, search.Filters(store_id=filters.pop("store_id", STORE), **filters),
                         sort=sort, per_page=50)


def _ids(result: search.Result) -> list[str]:
    return [item["id"] for item in result.items]


def _drain(database: Database) -> None:
    while search.index_batch(database, size=100).full:
        pass


@pytest.fixture
def shelf(database: Database, redis_server: str):  # type: ignore[no-untyped-def]
    """A small shelf of the database's own, indexed."""
    for sku, name, brand, category, price in [
        ("ATTA-5KG", "Aashirvaad Shudh Chakki Atta 5 kg", "Aashirvaad", "Atta & Flours", 26_200),
        ("GHEE-1L", "Amul Pure Ghee 1 L", "Amul", "Edible Oils & Ghee", 61_000),
        ("DAHI-400G", "Amul Masti Dahi 400 g", "Amul", "Dairy", 3_200),
    ]:
        catalog.create_product(database, STORE, sku, {"name": name, "brand": brand, "category": category,
                                                       "unit": name.rsplit(" ", 2)[-2] + " " + name.rsplit(" ", 1)[-1],
                                                       "price_paise": price}, stock=10)
    search.rebuild(database)
    yield database
    version = search.current_version(database)
    if version:
        index.Index(index.client(), index.root_of(database)).retire(version)


def test_a_write_is_stored_at_once_and_searchable_after_the_indexer_runs(shelf: Database) -> None:
    catalog.create_product(shelf, STORE, "MAKHANA-100G", {"name": "Farmley Makhana Fox Nuts 100 g",
                                                          "brand": "Farmley", "category": "Dry Fruits",
                                                          "unit": "100 g", "price_paise": 12_000}, stock=5)

    assert _ids(_find(shelf, "makhana")) == []  # the write did not wait for the index
    assert dirty.lag_ms(shelf) >= 0 and dirty.pending(shelf)

    batch = search.index_batch(shelf, size=100)

    assert batch.indexed == 1 and batch.cleared == 1
    assert _ids(_find(shelf, "makhana")) == [f"{STORE}:MAKHANA-100G"]
    assert _ids(_find(shelf, "fox nut")) == [f"{STORE}:MAKHANA-100G"]
    assert not dirty.pending(shelf) and dirty.lag_ms(shelf) == 0


def test_the_lag_is_the_age_of_the_oldest_unindexed_change(shelf: Database) -> None:
    catalog.update_product(shelf, f"{STORE}:GHEE-1L", {"price_paise": 60_000})
    marked = shelf[collections.PRODUCTS].find_one({"_id": f"{STORE}:GHEE-1L"})
    assert marked is not None

    assert dirty.lag_ms(shelf, now=marked[dirty.DIRTY_FIELD] + 7_000) == 7_000
    catalog.update_product(shelf, f"{STORE}:GHEE-1L", {"price_paise": 59_000})  # a newer change keeps the oldest
    assert dirty.lag_ms(shelf, now=marked[dirty.DIRTY_FIELD] + 7_000) == 7_000


def test_repeated_changes_of_one_product_are_indexed_once_with_the_last_state(shelf: Database) -> None:
    pid = f"{STORE}:GHEE-1L"
    for price in (60_000, 59_000, 58_000):
        catalog.update_product(shelf, pid, {"price_paise": price})

    batch = search.index_batch(shelf, size=100)

    assert batch.indexed == 1
    assert _find(shelf, "ghee").items[0]["price_paise"] == 58_000


def test_a_change_made_while_the_indexer_works_stays_marked(shelf: Database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pid = f"{STORE}:GHEE-1L"
    catalog.update_product(shelf, pid, {"price_paise": 60_000})
    apply = index.Index.apply

    def apply_then_a_store_edits(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        done = apply(self, *args, **kwargs)
        catalog.update_product(shelf, pid, {"price_paise": 55_000})  # lands after the indexer read
        return done

    monkeypatch.setattr(index.Index, "apply", apply_then_a_store_edits)
    search.index_batch(shelf, size=100)
    monkeypatch.undo()

    assert dirty.pending(shelf)
    search.index_batch(shelf, size=100)
    assert _find(shelf, "ghee").items[0]["price_paise"] == 55_000
    assert not dirty.pending(shelf)


def test_a_deleted_product_is_gone_from_results_and_suggestions(shelf: Database) -> None:
    pid = f"{STORE}:GHEE-1L"
    assert _ids(_find(shelf, "ghee")) == [pid]
    assert {"kind": "product", "text": "Amul Pure Ghee"} in search.suggest(shelf, "gh")

    catalog.delete_product(shelf, pid)
    batch = search.index_batch(shelf, size=100)

    assert batch.removed == 1
    assert _ids(_find(shelf, "ghee")) == []
    assert {"kind": "product", "text": "Amul Pure Ghee"} not in search.suggest(shelf, "gh")
    assert {"kind": "brand", "text": "Amul"} in search.suggest(shelf, "am")  # the dahi is still Amul's
    assert not dirty.pending(shelf)


def test_a_price_change_moves_the_product_between_price_filters_and_buckets(shelf: Database) -> None:
    pid = f"{STORE}:DAHI-400G"
    before = _find(shelf, "amul")
    assert {"value": "0-50", "count": 1} in before.facets["price"]
    assert pid in _ids(_find(shelf, "amul", max_price=5_000))

    catalog.update_product(shelf, pid, {"price_paise": 15_000})
    _drain(shelf)

    after = _find(shelf, "amul")
    assert {"value": "0-50", "count": 1} not in after.facets["price"]
    assert {"value": "100-200", "count": 1} in after.facets["price"]
    assert pid not in _ids(_find(shelf, "amul", max_price=5_000))
    assert pid in _ids(_find(shelf, "amul", min_price=10_000, max_price=20_000))
    assert _find(shelf, "amul", sort="price_desc").items[0]["id"] == f"{STORE}:GHEE-1L"


def test_stock_running_out_updates_the_in_stock_facet_and_filter(shelf: Database) -> None:
    pid = f"{STORE}:DAHI-400G"
    catalog.adjust_stock(shelf, pid, -10)
    _drain(shelf)

    found = _find(shelf, "amul")
    assert found.facets["in_stock"] == {"true": 1, "false": 1}
    assert pid not in _ids(_find(shelf, "amul", in_stock=True))
    assert pid in _ids(_find(shelf, "amul", in_stock=False))
    with pytest.raises(catalog.ProductBusy):
        catalog.adjust_stock(shelf, pid, -1)


def test_an_ops_synonym_counts_from_the_next_query_without_a_rebuild(shelf: Database) -> None:
    assert _ids(_find(shelf, "gehunflour")) == []

    synonyms.put(shelf, "test-gehun", ["gehunflour", "atta"])

    assert _ids(_find(shelf, "gehunflour")) == [f"{STORE}:ATTA-5KG"]


def test_a_full_rebuild_during_searches_never_shows_an_empty_or_partial_index(database: Database,
                                                                              redis_server: str) -> None:
    seed.seed(database)
    search.rebuild(database)
    expected = {q: _find(database, q).total for q in ("atta", "amul", "biscuits")}
    assert all(expected.values())
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def shopper() -> None:
        while not stop.is_set():
            for q, total in expected.items():
                got = _find(database, q).total
                if got != total:
                    seen.append((q, got))

    shoppers = [threading.Thread(target=shopper) for _ in range(2)]
    for t in shoppers:
        t.start()
    try:
        versions = {search.rebuild(database)["version"] for _ in range(2)}
    finally:
        stop.set()
        for t in shoppers:
            t.join()

    assert len(versions) == 2
    assert seen == []
    index.Index(index.client(), index.root_of(database)).retire(str(search.current_version(database)))


def test_a_change_indexed_during_a_rebuild_survives_the_flip(database: Database, redis_server: str) -> None:
    seed.seed(database)
    search.rebuild(database)
    # Ids sort by store, then SKU: the build reads this one in its first batch, before the edit.
    pid = f"{STORE}:AMUL-GHEE-1L"
    changed: list[int] = []

    def a_store_edits_mid_build(done: int, total: int) -> None:
        if not changed:
            catalog.update_product(database, pid, {"price_paise": 1_234})
            search.index_batch(database, size=100)
            changed.append(done)

    search.index.rebuild(database, index.client(), progress=a_store_edits_mid_build)

    found = _find(database, "amul ghee")
    assert {item["id"]: item["price_paise"] for item in found.items}[pid] == 1_234
    index.Index(index.client(), index.root_of(database)).retire(str(search.current_version(database)))


def test_an_orders_stock_moves_reach_the_index_and_sales_rank_by_popularity(shelf: Database) -> None:
    from kirana import stock

    _drain(shelf)
    reserved = stock.reserve(shelf, STORE, "ord_test_1", "DAHI-400G", 10)
    assert isinstance(reserved, stock.Reserved)
    assert dirty.pending(shelf)  # the order's update marked the product
    stock.settle(shelf, STORE, "ord_test_1", "DAHI-400G")
    _drain(shelf)

    found = _find(shelf, "amul", sort="popularity")
    assert found.items[0]["id"] == f"{STORE}:DAHI-400G"
    assert found.items[0]["popularity"] == 1 and found.items[0]["in_stock"] is False


def test_the_cli_rebuilds_with_a_progress_bar(shelf: Database) -> None:
    import os
    import subprocess
    import sys

    before = search.current_version(shelf)
    done = subprocess.run([sys.executable, "-m", "kirana.search", "reindex"], capture_output=True, text=True,
                          env={**os.environ, "MONGO_DB": shelf.name}, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert "3 products in" in done.stdout and f"(replaced v{before})" in done.stdout
    assert "100%" in done.stderr and "3/3" in done.stderr  # tqdm's bar
    assert search.current_version(shelf) != before


def test_a_build_that_died_half_way_is_cleaned_up_by_the_next(shelf: Database) -> None:
    ix = index.Index(index.client(), index.root_of(shelf))
    dead = ix.begin_build()
    ix.apply(list(shelf[collections.PRODUCTS].find({})), [], mode="build", version=dead)  # ...and then it died
    assert search.current_version(shelf) != dead

    search.rebuild(shelf)

    leftovers = list(index.client().scan_iter(match=f"{index.space(ix.root, dead)}*", count=1000))
    assert leftovers and all(0 < index.client().ttl(key) <= index.RETIRED_TTL_S for key in leftovers)
    assert _find(shelf, "ghee").total == 1


def test_at_most_one_indexer_run_waits_in_the_queue_however_many_writes_and_carry_ons(
        shelf: Database, monkeypatch, redis_server: str) -> None:  # type: ignore[no-untyped-def]
    import redis

    from tasks import search as search_tasks
    from tasks.queues import Queue

    monkeypatch.setattr(collections, "database", lambda cfg=None: shelf)
    r = redis.Redis.from_url(redis_server)

    def waiting() -> int:
        return sum(1 for raw in r.lrange(Queue.SEARCH.value, 0, -1) if b"search.index_dirty" in raw)

    r.delete(search_tasks._pending_key())
    before = waiting()
    try:
        sent = [search_tasks.request_indexing() for _ in range(5)]
        carried = [search_tasks.carry_on(countdown=0) for _ in range(3)]  # runs that left work behind
        assert sent == ["enqueued"] + ["coalesced"] * 4
        assert carried == ["coalesced"] * 3
        assert waiting() - before == 1
    finally:
        r.delete(search_tasks._pending_key())
        for raw in r.lrange(Queue.SEARCH.value, 0, -1):
            if b"search.index_dirty" in raw:
                r.lrem(Queue.SEARCH.value, 0, raw)
