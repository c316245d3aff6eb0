"""The sync batch's body: at most SYNC_MAX_OPS operations, each op_id once (api/sync.BatchIn)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api.sync import BatchIn
from kirana.config import settings


def _op(op_id: str) -> dict[str, Any]:
    return {"op_id": op_id, "kind": "cart.clear", "client_at_ms": 1}


def test_a_batch_within_the_cap_with_distinct_ids_is_taken() -> None:
    batch = BatchIn.model_validate({"device_id": "dev-1", "ops": [_op("a"), _op("b")]})
    assert [op.op_id for op in batch.ops] == ["a", "b"]


def test_an_op_id_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="each op_id may appear once in a batch"):
        BatchIn.model_validate({"device_id": "dev-1", "ops": [_op("a"), _op("a")]})


def test_more_operations_than_the_cap_are_refused() -> None:
    cap = settings().sync_max_ops
    with pytest.raises(ValidationError, match=f"at most {cap} operations in one batch"):
        BatchIn.model_validate({"device_id": "dev-1", "ops": [_op(f"op-{i}") for i in range(cap + 1)]})
