"""make security: every accepted bandit finding has its reason, and an unaudited pip-audit run never passes silently."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _scan():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("security_scan", ROOT / "deploy" / "security_scan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_finding_in_the_bandit_baseline_has_its_reason_written_down() -> None:
    baseline = json.loads((ROOT / "deploy" / "bandit-baseline.json").read_text())
    accepted = {(r["filename"], r["test_id"]) for r in baseline["results"]}
    doc = (ROOT / "docs" / "security-scan.md").read_text()
    reasoned = set(re.findall(r"^\| `([^`]+)` \| (B\d{3}) \| \S", doc, re.M))
    assert accepted <= reasoned, sorted(accepted - reasoned)
    assert reasoned <= accepted, f"reasons for findings no longer in the baseline: {sorted(reasoned - accepted)}"


def test_a_pip_audit_run_that_could_check_nothing_fails_unless_offline_is_accepted() -> None:
    scan = _scan()
    skipped = {"dependencies": [{"name": "flask", "skip_reason": "Dependency not found on PyPI"}], "fixes": []}

    status, lines = scan.audit_verdict(skipped, offline_ok=False)
    assert status == 1 and lines[0].startswith("NOT AUDITED: 1 of 1 packages")
    status, lines = scan.audit_verdict(skipped, offline_ok=True)
    assert status == 0 and lines[-1] == "SECURITY_OFFLINE_OK=1: accepted, NOT a clean audit"


def test_a_known_vulnerability_fails_even_offline_and_a_clean_audit_passes() -> None:
    scan = _scan()
    vulnerable = {"dependencies": [
        {"name": "jinja2", "version": "2.0", "vulns": [{"id": "PYSEC-1", "fix_versions": []}]},
        {"name": "flask", "skip_reason": "not found"}]}
    clean = {"dependencies": [{"name": "flask", "version": "3.1", "vulns": []}]}

    assert scan.audit_verdict(vulnerable, offline_ok=True)[0] == 1
    assert "VULNERABLE jinja2 2.0: PYSEC-1" in scan.audit_verdict(vulnerable, offline_ok=True)[1]
    assert scan.audit_verdict(clean, offline_ok=False) == (0, ["pip-audit: 1 packages, no known vulnerability"])


def test_ci_runs_the_scan_and_only_the_local_ci_accepts_an_offline_database() -> None:
    assert "SECURITY_OFFLINE_OK=1 make security" in (ROOT / ".ci" / "run").read_text()
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert "workflow_dispatch" in workflow[True]  # yaml reads the key `on` as True
    steps = workflow["jobs"]["security"]["steps"]
    assert {"run": "make security"} in steps and "SECURITY_OFFLINE_OK" not in json.dumps(workflow)
