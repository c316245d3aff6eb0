"""The versions declare what the code relies on: kirana.db.INDEXES is the last version's indexes."""

from __future__ import annotations

import dataclasses

from kirana import db
from migrations.runner import declared
from migrations.steps import index
from migrations.versions import STEPS


def _code_indexes() -> set[tuple[str, tuple[tuple[str, int], ...], bool]]:
    return {(collection, tuple(keys), bool(options.get("unique", False))) for collection, keys, options in db.INDEXES}


def test_the_last_version_declares_exactly_the_indexes_the_code_relies_on() -> None:
    _, indexes = declared(STEPS)
    assert _code_indexes() - indexes == set(), "in kirana.db.INDEXES but created by no migration: add a step"
    assert indexes - _code_indexes() == set(), "created by a migration but not in kirana.db.INDEXES"


def test_every_index_is_declared_once_on_a_collection_a_step_declares() -> None:
    collections, _ = declared(STEPS)
    seen = [(c, keys) for step in STEPS for c, keys, _ in step.indexes]
    assert len(seen) == len(set(seen))
    assert {c for c, _ in seen} <= collections
    assert len([c for step in STEPS for c in step.collections]) == len(collections), "a collection declared twice"


def test_the_gamification_and_mobile_collections_are_declared() -> None:
    collections, _ = declared(STEPS)
    assert {"loyalty_ledger", "loyalty_accounts", "achievements"} <= set(STEPS[3].collections)
    assert {"devices", "carts", "sync_batches", "sync_operations", "store_analytics"} <= set(STEPS[4].collections)
    assert "backups" in collections


def test_each_step_rolls_back_or_says_why_it_cannot() -> None:
    for step in STEPS:
        assert step.irreversible is None or len(step.irreversible) > 20, step.version
        assert step.data_up is None or step.data_down is not None or step.irreversible, \
            f"v{step.version} changes data without a way back or a reason"


def test_a_checksum_changes_with_the_declaration_and_only_then() -> None:
    step = STEPS[1]
    assert step.checksum() == dataclasses.replace(step).checksum()
    assert step.checksum() != dataclasses.replace(step, indexes=(*step.indexes, index("users", "phone"))).checksum()
    assert step.checksum() != dataclasses.replace(step, collections=step.collections[1:]).checksum()
