"""`make help` lists every target by group, and the targets other docs and CI name still exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make missing")

KEPT = ["install", "run", "stop", "test", "test-unit", "test-e2e", "lint", "fmt", "seed", "db-indexes",
        "audit-verify", "health", "dead-letters", "chaos", "bench", "lock", "clean"]
GROUPS = {
    "Setup": {"install", "exporter", "tools"},
    "Development": {"run", "stop", "logs"},
    "Test": {"test", "chaos", "bench", "coverage"},
    "Lint": {"lint"},
    "Build": {"build"},
    "Docker": {"docker-up", "docker-down", "docker-logs"},
    "Database": {"db-migrate", "db-backup", "db-restore"},
    "Deploy": {"deploy-staging", "deploy-production"},
    "Cleanup": {"clean"},
}


def help_groups() -> dict[str, set[str]]:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    groups: dict[str, set[str]] = {}
    current = ""
    for line in out.splitlines():
        if line and not line.startswith(" "):
            current = line.split(" (")[0].strip()
            groups[current] = set()
        elif match := re.match(r"\s+make (\S+)", line):
            groups.setdefault(current, set()).add(match.group(1))
    return groups


def test_given_make_help_then_each_group_lists_its_targets() -> None:
    groups = help_groups()
    for group, targets in GROUPS.items():
        assert targets <= groups.get(group, set()), group


def test_given_the_makefile_then_every_existing_target_is_kept() -> None:
    listed = set().union(*help_groups().values())
    assert set(KEPT) <= listed


@pytest.mark.parametrize(("target", "command"), [
    ("db-migrate", "-m migrations up"),
    ("db-backup", "-m kirana.backups run"),
    ("db-restore BACKUP=b1 DB=restored", "-m kirana.backups restore b1 --into restored"),
    ("run", "-m stack run"),
    ("lint", "-m workers.k8s --check"),
])
def test_given_a_target_then_it_runs_the_documented_command(target: str, command: str) -> None:
    dry = subprocess.run(["make", "--no-print-directory", "-n", *target.split()], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=30).stdout
    assert command in dry


def test_given_the_ci_workflow_then_it_lints_checks_tests_on_real_servers_and_builds_the_image() -> None:
    import yaml

    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    runs = {name: " ".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}

    assert "make lint" in runs["lint"]
    assert "promtool test rules" in runs["deploy-checks"] and "amtool check-config" in runs["deploy-checks"]
    assert {s["image"] for s in jobs["test"]["services"].values()} == {"redis:7", "mongo:7"}
    assert {"REDIS_URL", "MONGO_URL"} <= set(jobs["test"]["env"])
    assert ".ci/install-tools" in runs["test"] and "make test" in runs["test"]
    build = next(s for s in jobs["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["file"] == "deploy/Dockerfile"


def test_given_the_docs_then_every_make_target_they_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {t for path in docs for t in re.findall(r"`make ([a-z][a-z0-9-]+)", path.read_text())}
    assert named
    assert {t for t in named if not re.search(rf"^{t}:", makefile, re.M)} == set()
