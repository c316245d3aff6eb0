"""Group commit: callers' items written in batches, each caller getting its own result or the batch's error."""

from __future__ import annotations

import threading
import time

import pytest

from kirana.group_commit import GroupCommit


def test_concurrent_callers_share_batches_and_each_gets_its_own_result() -> None:
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(items)
        time.sleep(0.01)  # a slow round trip, so callers gather meanwhile
        return [i * 10 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=50)
    results: dict[int, int] = {}

    def call(i: int) -> None:
        results[i] = commit.submit(i, timeout_s=5)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * 10 for i in range(200)}
    assert sorted(i for batch in batches for i in batch) == list(range(200)), "each item written exactly once"
    assert len(batches) < 100, f"{len(batches)} writes for 200 items: no batching"
    assert max(len(b) for b in batches) <= 50


def test_a_failed_write_fails_every_caller_of_that_batch_and_the_next_batch_still_runs() -> None:
    calls = 0

    def write(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return items

    commit: GroupCommit[str, str] = GroupCommit(write)
    with pytest.raises(ConnectionError):
        commit.submit("a", timeout_s=5)
    assert commit.submit("b", timeout_s=5) == "b"


def test_a_write_that_never_returns_times_out_the_caller() -> None:
    release = threading.Event()
    def write(items: list[str]) -> list[str]:
        release.wait(10)
        return items

    commit: GroupCommit[str, str] = GroupCommit(write)
    with pytest.raises(TimeoutError):
        commit.submit("a", timeout_s=0.1)
    release.set()


def test_under_load_the_writer_gathers_but_a_lone_caller_after_a_quiet_spell_is_written_at_once() -> None:
    batches: list[list[int]] = []
    first_write = threading.Event()
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 2:
            first_write.set()
            release.wait(5)  # hold the write so that the next two callers share the next one
        return items

    commit: GroupCommit[int, int] = GroupCommit(write, gather_s=0.3)
    started = time.monotonic()
    assert commit.submit(0, timeout_s=5) == 0
    assert time.monotonic() - started < 0.2, "a lone caller waited for the gather window"

    held = threading.Thread(target=commit.submit, args=(1,), kwargs={"timeout_s": 5})
    held.start()
    assert first_write.wait(5)
    pair = [threading.Thread(target=commit.submit, args=(i,), kwargs={"timeout_s": 5}) for i in (2, 3)]
    for t in pair:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in [held, *pair]:
        t.join()
    assert batches[1:] == [[1], [2, 3]], batches  # two callers in one write: the writer is busy now

    burst = [threading.Thread(target=commit.submit, args=(i,), kwargs={"timeout_s": 5}) for i in range(10, 20)]
    for t in burst:  # 10 callers over ~0.1 s, well inside the 0.3 s window
        t.start()
        time.sleep(0.01)
    for t in burst:
        t.join()
    assert batches[3:] == [list(range(10, 20))], f"burst written as {batches[3:]}: no gathering"
