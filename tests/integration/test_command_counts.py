"""MONGO_COMMAND_COUNTS: each process's MongoDB commands, by command and collection, in the data dir."""

from __future__ import annotations

import time
from pathlib import Path

import pymongo

from kirana import command_counts


def test_counts_are_written_by_process_and_summed_over_the_stack(mongo_server: str, tmp_path: Path,
                                                                  monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(command_counts, "FLUSH_S", 0.0)
    client = pymongo.MongoClient(mongo_server, event_listeners=command_counts.listeners(1, tmp_path))
    try:
        things = client["kirana_counts"]["things"]
        things.insert_one({"_id": time.time_ns()})
        things.find_one({})
        things.find_one({})
        client.admin.command("ping")  # upkeep: not counted
    finally:
        client.close()
    (only,) = command_counts.by_process(tmp_path).values()
    assert only["insert things"] == 1
    assert only["find things"] == 2
    assert not any(key.startswith("ping") for key in only)
    assert command_counts.read(tmp_path) == only


def test_counting_is_off_unless_asked(tmp_path: Path) -> None:
    assert command_counts.listeners(0, tmp_path) == []
    assert command_counts.read(tmp_path) == {}
