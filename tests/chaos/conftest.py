"""Fixtures of the chaos suite: a private stack per case, and the table printed at the end.

Every case starts its own servers (tests/chaos/rig.py) and never uses the
session `stack` fixture of tests/conftest.py: the cases restart Redis and stop
MongoDB, which would break every other test sharing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import report
from tests.chaos.rig import ChaosStack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos_first: run before the other chaos cases (its recovery is waited "
                                       "out while they run)")
    config.addinivalue_line("markers", "chaos_last: run after the other chaos cases")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    first = [item for item in items if item.get_closest_marker("chaos_first")]
    last = [item for item in items if item.get_closest_marker("chaos_last")]
    if first or last:
        items[:] = first + [item for item in items if item not in first and item not in last] + last


@pytest.fixture
def case_dir(request: pytest.FixtureRequest) -> Path:
    """A directory of the case's own under the kept chaos dir: data and logs of its servers."""
    path = report.chaos_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def make_stack(case_dir: Path) -> Iterator[Callable[..., ChaosStack]]:
    """Start a private stack (ChaosStack's keywords); whatever was started is stopped after the case."""
    made: list[ChaosStack] = []

    def make(**kwargs: Any) -> ChaosStack:
        stack = ChaosStack(case_dir, **kwargs)
        made.append(stack)
        return stack.__enter__()

    yield make
    for stack in made:
        stack.stop()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[report.CaseResult], report.CaseResult]:
    """Keep a case's measurements for the table (the verdict is filled in from the test's outcome)."""

    def keep(result: report.CaseResult) -> report.CaseResult:
        result.test = request.node.nodeid
        return report.record(result)

    return keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if call.when == "call":
        verdict = "ok" if outcome.passed else "FAILED"
        for result in report.RESULTS:
            if result.test == item.nodeid:
                result.verdict = verdict
                report.write()
    return outcome


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not report.RESULTS:
        return
    terminalreporter.section("chaos")
    for line in report.table():
        terminalreporter.write_line(line)
    terminalreporter.write_line("")
    terminalreporter.write_line(f"results: {report.results_file()}   logs: {report.chaos_dir()}")
