"""Worker heartbeats in a real Redis."""

from __future__ import annotations

import uuid

from kirana import liveness
from kirana.clock import now_ms


def test_a_pool_is_alive_only_while_its_workers_beat(redis_client) -> None:  # type: ignore[no-untyped-def]
    pool = f"p{uuid.uuid4().hex[:6]}"
    liveness.beat(redis_client, f"{pool}@host-a")
    liveness.beat(redis_client, f"{pool}@host-b", at_ms=now_ms() - 60_000)

    assert liveness.alive(redis_client, [pool, "nobody"], window_s=10) == {pool: 1, "nobody": 0}
    liveness.depart(redis_client, f"{pool}@host-a")
    assert liveness.alive(redis_client, [pool], window_s=10) == {pool: 0}
    assert liveness.alive(redis_client, [pool], window_s=120) == {pool: 1}
