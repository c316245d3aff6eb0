"""The demo catalog and the seed's writes, checked without a database."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from kirana import seed

PRODUCT_KEYS = {"sku", "name", "brand", "category", "unit", "price_paise", "mrp_paise", "stock"}
REQUIRED_CATEGORIES = {
    "Atta & Flours",
    "Rice & Rice Products",
    "Dals & Pulses",
    "Edible Oils & Ghee",
    "Masalas & Spices",
    "Salt Sugar & Jaggery",
    "Tea & Coffee",
    "Biscuits & Cookies",
    "Snacks & Namkeen",
    "Dairy",
    "Bread & Bakery",
    "Breakfast & Instant Food",
    "Beverages",
    "Chocolates & Sweets",
    "Dry Fruits",
    "Pickles & Sauces",
    "Personal Care",
    "Household Cleaning",
    "Baby Care",
    "Pooja Needs",
}


def by_sku() -> dict[str, dict[str, Any]]:
    return {p["sku"]: p for p in seed.catalog()}


def test_catalog_is_large_enough() -> None:
    assert len(seed.catalog()) >= 500


def test_products_have_exactly_the_documented_keys() -> None:
    for product in seed.catalog():
        assert set(product) == PRODUCT_KEYS, product["sku"]


def test_skus_are_unique_and_well_formed() -> None:
    skus = [p["sku"] for p in seed.catalog()]
    assert len(skus) == len(set(skus))
    for sku in skus:
        assert re.fullmatch(r"[A-Z0-9-]+", sku), sku
        assert len(sku) <= 48, sku


def test_names_are_unique() -> None:
    names = [p["name"] for p in seed.catalog()]
    assert len(names) == len(set(names))


def test_every_category_is_stocked_with_at_least_ten_products() -> None:
    counts = Counter(p["category"] for p in seed.catalog())
    assert set(counts) >= REQUIRED_CATEGORIES
    assert {c: n for c, n in counts.items() if n < 10} == {}


def test_prices_are_positive_paise_not_above_mrp() -> None:
    for product in seed.catalog():
        price, mrp = product["price_paise"], product["mrp_paise"]
        assert type(price) is int and type(mrp) is int, product["sku"]
        assert 0 < price <= mrp, product["sku"]


def test_prices_are_realistic() -> None:
    products = by_sku()
    assert 20_000 <= products["AASHIRVAAD-ATTA-5KG"]["price_paise"] <= 35_000
    assert products["AASHIRVAAD-ATTA-5KG"]["name"] == "Aashirvaad Shudh Chakki Atta 5 kg"
    # A bigger pack of the same line costs more in all but less per kg.
    one, five = products["AASHIRVAAD-ATTA-1KG"]["mrp_paise"], products["AASHIRVAAD-ATTA-5KG"]["mrp_paise"]
    assert one < five < 5 * one


def test_stock_is_bounded_and_some_is_out() -> None:
    stocks = [p["stock"] for p in seed.catalog()]
    assert all(type(s) is int and 0 <= s <= 200 for s in stocks)
    assert 0 in stocks
    assert any(s > 0 for s in stocks)


def test_catalog_is_deterministic() -> None:
    assert seed.catalog() == seed.catalog()


def test_stores() -> None:
    assert len(seed.STORES) == 2
    ids = [s["_id"] for s in seed.STORES]
    assert len(set(ids)) == 2
    for store_id in ids:
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", store_id)
    assert {s["city"] for s in seed.STORES} == {"Bengaluru", "Pune"}


def test_stores_get_different_but_deterministic_stock() -> None:
    products = seed.catalog()
    first, second = (s["_id"] for s in seed.STORES)
    a = [seed.store_stock(first, p) for p in products]
    b = [seed.store_stock(second, p) for p in products]
    assert a != b
    assert b == [seed.store_stock(second, p) for p in products]
    assert all(0 <= s <= 200 for s in b)
    assert 0 in b
