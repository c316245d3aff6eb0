"""The code keeps to the MongoDB subset both servers in the test matrix answer (docs/mongodb-subset.md).

Read from the source: a call outside the subset may sit on a path no test reaches on FerretDB.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kirana", "tasks", "api", "migrations", "workers")


def _calls(method: str) -> list[tuple[str, int, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
                    found.append((str(path.relative_to(ROOT)), node.lineno, node))
    return found


def test_no_find_one_and_update_asks_for_a_projection() -> None:
    """FerretDB 1.24 answers NotImplemented to findAndModify with `fields`."""
    calls = _calls("find_one_and_update")
    assert len(calls) > 10  # the scan sees the code
    projected = [(path, line) for path, line, call in calls
                 if len(call.args) >= 3 or any(k.arg == "projection" for k in call.keywords)]
    assert projected == []


def test_bulk_writes_go_through_the_chunking_helper() -> None:
    """One update command of 100 statements deadlocks FerretDB 1.24 (SQLite): kirana.db.bulk_update chunks."""
    assert [(path, line) for path, line, _ in _calls("bulk_write")] == [("kirana/db.py", _bulk_update_line())]


def _bulk_update_line() -> int:
    source = (ROOT / "kirana" / "db.py").read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if ".bulk_write(" in line)


def test_every_prune_rule_reads_through_an_index_of_its_guard_and_age() -> None:
    from kirana import db, retention

    declared = {(collection, tuple(keys)) for collection, keys, _ in db.INDEXES}
    missing = [rule.name for rule in retention.RULES if (rule.collection, tuple(rule.index_keys())) not in declared]
    assert missing == []


def test_every_prune_rule_names_a_retention_setting() -> None:
    from dataclasses import fields

    from kirana import retention
    from kirana.config import Settings

    settings_fields = {f.name for f in fields(Settings)}
    assert [r.name for r in retention.RULES if r.setting not in settings_fields
            or not r.setting.startswith("retention_")] == []
