"""How search reads words: normalization, stems, one-typo neighbours, the synonym table, relevance pieces."""

from __future__ import annotations

import pytest

from kirana.search import query, synonyms, text


def test_case_diacritics_apostrophes_and_punctuation_are_ignored() -> None:
    assert text.words("Haldiram's ALOO Bhujiā, 200 g") == ["haldirams", "aloo", "bhujia", "200", "g"]
    assert text.normalize("Nescafé  Gold—Blend") == "nescafe gold blend"
    assert text.normalize("Parle-G") == "parle g"


@pytest.mark.parametrize(("word", "singular"), [
    ("dals", "dal"), ("biscuits", "biscuit"), ("cookies", "cookie"), ("berries", "berry"),
    ("potatoes", "potato"), ("glass", None), ("gas", None), ("w320", None),
])
def test_plural_stems(word: str, singular: str | None) -> None:
    assert text.stem(word) == singular


@pytest.mark.parametrize(("a", "b", "near"), [
    ("excel", "exel", True),        # a letter missing
    ("paneer", "panner", True),     # a letter changed
    ("horlicks", "horlciks", True), # two letters swapped
    ("coffee", "cofee", True),
    ("shampoo", "shampooo", True),  # a letter too many
    ("paneer", "pannir", False),    # two changes
    ("atta", "attaaa", False),
])
def test_one_typo(a: str, b: str, near: bool) -> None:
    assert text.within_one_typo(a, b) is near
    assert text.within_one_typo(b, a) is near


def test_a_deletion_neighbourhood_finds_substitutions_through_a_shared_deletion() -> None:
    assert text.deletes("paneer") & text.deletes("panner")
    assert "exel" in text.deletes("excel")
    assert "horlciks" in text.transposes("horlicks")


def test_prefixes_are_bounded() -> None:
    assert text.prefixes("atta") == ["a", "at", "att", "atta"]
    assert len(text.prefixes("x" * 100)) == text.PREFIX_MAX_LEN


def test_the_synonym_table_maps_every_term_to_its_whole_group() -> None:
    table = synonyms.build_table([["atta", "Aata", "wheat flour"], ["dal", "daal"]])

    assert table["aata"] == [("atta",), ("aata",), ("wheat", "flour")]
    assert table["wheat flour"] == table["atta"]
    assert table["daal"] == [("dal",), ("daal",)]
    assert "wheat" not in table


def test_the_seed_groups_cover_the_issues_examples() -> None:
    table = synonyms.build_table(synonyms.SEED.values())
    for a, b in [("atta", "aata"), ("aata", "wheat flour"), ("dal", "lentils"), ("daal", "dal"), ("alu", "aloo"),
                 ("aloo", "potato"), ("dahi", "curd"), ("jeera", "cumin")]:
        assert tuple(b.split()) in table[a], (a, b)


def test_price_buckets() -> None:
    assert query.price_bucket(4_999) == "0-50"
    assert query.price_bucket(5_000) == "50-100"
    assert query.price_bucket(99_999) == "500-1000"
    assert query.price_bucket(250_000) == "1000+"


def test_filters_accept_only_matching_products() -> None:
    doc = {"store_id": "s1", "category": "Dairy", "brand": "Amul", "price_paise": 5_000, "in_stock": True}

    assert query.Filters(store_id="s1", category="dairy", brand="AMUL", min_price=5_000, max_price=5_000,
                         in_stock=True).accepts(doc)
    assert not query.Filters(store_id="s2").accepts(doc)
    assert not query.Filters(max_price=4_999).accepts(doc)
    assert not query.Filters(in_stock=False).accepts(doc)
