"""The relevance set (tests/data/search_relevance.json): every query finds its products in the top 5."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kirana import db, search, seed
from kirana.search import index

CASES_FILE = Path(__file__).resolve().parent.parent / "data" / "search_relevance.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["cases"]
DEFAULT_STORE = seed.STORES[0]["_id"]
TOP = 5


@pytest.fixture(scope="module")
def catalog(mongo_server: str, redis_server: str):  # type: ignore[no-untyped-def]
    """The seeded catalog, indexed once for the module."""
    client = db.client()
    name = f"t_{uuid.uuid4().hex[:12]}"
    database = client[name]
    db.ensure_indexes(database)
    seed.seed(database)
    search.rebuild(database)
    yield database
    client.drop_database(name)
    index.Index(index.client(), index.root_of(database)).retire(str(search.current_version(database)))


def test_the_set_is_big_and_covers_every_kind() -> None:
    assert len(CASES) >= 40
    assert {c["kind"] for c in CASES} == {"exact", "brand", "typo", "transliteration", "synonym", "partial", "filter"}
    skus = {p["sku"] for p in seed.catalog()}
    unknown = [sku for c in CASES for sku in c["expect"] if sku not in skus]
    assert not unknown, f"the set names SKUs the seed does not have: {unknown}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}:{c['q']}" for c in CASES])
def test_expected_products_are_in_the_top_five(catalog, case: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    filters = dict(case.get("filters") or {})
    store_id = filters.pop("store_id", DEFAULT_STORE)
    found = search.search(catalog, case["q"], search.Filters(store_id=store_id, **filters),
                          sort=case.get("sort", "relevance"), per_page=TOP)

    top = [item["id"] for item in found.items]
    missing = [sku for sku in case["expect"] if f"{store_id}:{sku}" not in top]
    assert not missing, f"{case['q']!r}: {missing} not in the top {TOP}: {[i['name'] for i in found.items]}"


SUGGEST_CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["suggest_cases"]


@pytest.mark.parametrize("case", SUGGEST_CASES, ids=[c["q"] for c in SUGGEST_CASES])
def test_suggestions_start_from_the_first_letters(catalog, case: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    shown = [s["text"] for s in search.suggest(catalog, case["q"], limit=TOP)]

    assert set(case["expect"]) <= set(shown), f"{case['q']!r}: {shown}"
