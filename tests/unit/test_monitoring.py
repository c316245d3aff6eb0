"""Prometheus config and alert rules (promtool), AlertManager routes (amtool), the Grafana dashboard.

The promtool and amtool checks need the Debian packages `prometheus` and
`prometheus-alertmanager` (.ci/run installs them); without them those tests are
skipped with the reason, which `make test` prints in its summary.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
GUIDE = ROOT / "docs" / "deploy.md"

TEAMS = {"payments", "security", "database", "ops"}
SEVERITIES = {"critical", "warning"}

# What the API's /metrics exposes (tests/integration/test_metrics.py scrapes a real one and checks this list).
API_METRICS = {
    "kirana_http_requests_total", "kirana_http_request_duration_seconds_bucket",
    "kirana_tasks_enqueued_total", "kirana_webhook_signature_failures_total",
    "kirana_queue_length", "kirana_queue_oldest_age_seconds", "kirana_queue_reserved",
    "kirana_pool_workers", "kirana_pool_stalled", "kirana_dead_letters_total", "kirana_outbox_backlog",
}
# Fixed in briefs/names.md and added to the same /metrics by the search and backups work.
API_METRICS_FROM_OTHER_FEATURES = {
    "kirana_search_index_lag_seconds", "kirana_backup_last_success_timestamp_seconds",
    "kirana_job_last_success_timestamp_seconds", "kirana_backup_last_failure_timestamp_seconds",
    "kirana_backup_last_duration_seconds",
    "kirana_backup_last_size_bytes", "kirana_leaderboard_last_refresh_timestamp_seconds",
}
# celery-exporter 0.11.2 (deploy/exporter-constraints.txt), from its src/exporter.py.
CELERY_EXPORTER_METRICS = {
    f"celery_{name}" for name in (
        "task_sent_total", "task_received_total", "task_started_total", "task_succeeded_total",
        "task_failed_total", "task_rejected_total", "task_revoked_total", "task_retried_total",
        "worker_up", "worker_tasks_active", "task_runtime_bucket", "task_runtime_count", "task_runtime_sum",
        "queue_length", "active_consumer_count", "active_worker_count", "active_process_count",
    )
}
# The standard exporters the rules watch (redis_exporter, percona mongodb_exporter, node_exporter,
# kube-state-metrics) and Prometheus' own series.
INFRA_METRICS = {
    "up", "process_start_time_seconds",
    "redis_up", "redis_memory_used_bytes", "redis_memory_max_bytes", "redis_evicted_keys_total",
    "mongodb_up", "mongodb_ss_opLatencies_latency", "mongodb_ss_opLatencies_ops",
    "node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", "kube_pod_container_status_restarts_total",
}
KNOWN_METRICS = API_METRICS | API_METRICS_FROM_OTHER_FEATURES | CELERY_EXPORTER_METRICS | INFRA_METRICS

PROMQL_WORDS = {
    "sum", "by", "without", "rate", "increase", "irate", "histogram_quantile", "avg", "max", "min", "count",
    "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "absent", "time", "changes",
    "label_replace", "bool", "offset", "le", "topk", "delta", "deriv",
}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool missing: apt-get install prometheus (CI installs it)")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None,
                                  reason="amtool missing: apt-get install prometheus-alertmanager (CI installs it)")


def run(*argv: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def rules() -> list[dict[str, Any]]:
    found = []
    for path in sorted((PROM / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


def promtool_tests() -> list[dict[str, Any]]:
    found = []
    for path in sorted((PROM / "tests").glob("*.yml")):
        found += yaml.safe_load(path.read_text())["tests"]
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers not followed by '(' and not inside {...} or [...]."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\bby\s*\([^)]*\)|\bwithout\s*\([^)]*\)|\bon\s*\([^)]*\)", " ", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"[0-9e]+", n)}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# -- Prometheus -------------------------------------------------------------------------------

@needs_promtool
def test_given_prometheus_yml_then_promtool_accepts_it_and_finds_the_rule_files() -> None:
    result = run("promtool", "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout + result.stderr


@needs_promtool
def test_given_the_alert_rules_then_promtool_checks_them() -> None:
    result = run("promtool", "check", "rules", *sorted(str(p) for p in (PROM / "rules").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_given_the_rule_unit_tests_then_every_one_passes() -> None:
    result = run("promtool", "test", "rules", *sorted(f"tests/{p.name}" for p in (PROM / "tests").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_given_a_broken_rule_then_the_unit_tests_fail(tmp_path: Path) -> None:
    """The rule tests can fail: a pool-down alert that waits for 1 worker instead of 0 is caught."""
    shutil.copytree(PROM / "rules", tmp_path / "rules")
    shutil.copytree(PROM / "tests", tmp_path / "tests")
    rule_file = tmp_path / "rules" / "kirana.yml"
    text = rule_file.read_text()
    broken = "max by (pool) (kirana_pool_workers) == 0"
    assert broken in text
    rule_file.write_text(text.replace(broken, "max by (pool) (kirana_pool_workers) == 1"))

    result = run("promtool", "test", "rules", "tests/kirana_test.yml", cwd=tmp_path)

    assert result.returncode != 0
    assert "KiranaWorkerPoolDown" in result.stdout + result.stderr


def test_given_every_alert_then_it_has_severity_team_summary_and_runbook_in_the_guide() -> None:
    anchors = github_anchors(GUIDE.read_text())
    alerts = rules()
    assert len(alerts) >= 20
    for rule in alerts:
        labels, annotations = rule["labels"], rule["annotations"]
        assert labels["severity"] in SEVERITIES, rule["alert"]
        assert labels["team"] in TEAMS or "{{" in labels["team"], rule["alert"]
        assert annotations["summary"], rule["alert"]
        url = annotations["runbook_url"]
        assert url.split("#")[0].endswith("docs/deploy.md"), rule["alert"]
        assert url.split("#")[1] == rule["alert"].lower(), rule["alert"]
        assert url.split("#")[1] in anchors, f"docs/deploy.md has no section for {rule['alert']}"


def test_given_templated_teams_then_they_only_yield_known_teams() -> None:
    for rule in rules():
        team = rule["labels"]["team"]
        if "{{" in team:
            assert set(re.findall(r"\}\}(\w+)\{\{", team)) <= TEAMS, rule["alert"]


def test_given_every_alert_then_a_promtool_test_sees_it_fire_and_sees_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in promtool_tests():
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fired == set(), "alerts no test sees firing"
    assert names - quiet == set(), "alerts no test sees quiet"


def test_given_the_issue_list_then_an_alert_covers_each_item() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {
        "KiranaApiErrorRate", "KiranaApiLatencyHigh", "KiranaQueueBacklog", "KiranaQueueOldestMessageOld",
        "KiranaTaskFailureRate", "KiranaWorkerPoolDown", "KiranaWorkerPoolNotConsuming", "KiranaBeatMissedSchedule",
        "KiranaDeadLettersGrowing", "KiranaPaymentCaptureFailures", "KiranaWebhookSignatureFailures",
        "KiranaSearchIndexLag", "KiranaBackupFailed", "KiranaBackupStale", "RedisMemoryHigh", "RedisEvictions",
        "MongoDown", "MongoSlow", "DiskSpaceLow", "CpuHigh", "MemoryHigh", "ContainerRestarting",
    } <= names


def test_given_the_rules_then_they_only_name_metrics_something_exposes() -> None:
    for rule in rules():
        unknown = metric_names(rule["expr"]) - KNOWN_METRICS
        assert not unknown, f"{rule['alert']} names {unknown}"


def test_given_the_prometheus_config_then_every_exporter_is_scraped() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"kirana-api", "celery", "flower", "redis", "mongodb", "node", "nginx"} <= jobs
    assert config["rule_files"] == ["rules/*.yml"]


# -- AlertManager -----------------------------------------------------------------------------

@needs_amtool
def test_given_alertmanager_yml_then_amtool_accepts_it() -> None:
    result = run("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(("labels", "receivers"), [
    (("severity=critical", "team=payments"), "pager,payments"),
    (("severity=warning", "team=payments"), "payments"),
    (("severity=warning", "team=security"), "security"),
    (("severity=critical", "team=database"), "pager,database"),
    (("severity=warning", "team=ops"), "ops"),
    (("severity=critical", "team=ops"), "pager,ops"),
    (("severity=warning",), "ops"),
])
def test_given_labels_then_alertmanager_routes_to_the_team_and_pages_on_critical(
        labels: tuple[str, ...], receivers: str) -> None:
    result = run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_given_alertmanager_yml_then_every_team_has_a_route_and_no_secret_is_inline() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    routed = {m.split("=")[1].strip('"') for r in config["route"]["routes"] for m in r["matchers"]
              if m.startswith("team=")}
    assert routed == TEAMS
    assert config["inhibit_rules"]
    for receiver in config["receivers"]:
        for kind, configs in receiver.items():
            for c in configs if isinstance(configs, list) else []:
                assert not {"routing_key", "service_key", "api_url", "url"} & set(c), f"{receiver['name']} {kind}"


# -- Grafana ----------------------------------------------------------------------------------

def dashboard_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS.glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [target["expr"] for target in panel.get("targets", [])]
    return exprs


def test_given_the_dashboard_then_it_shows_what_ops_watch() -> None:
    exprs = " ".join(dashboard_exprs())
    for metric in ("kirana_queue_length", "kirana_queue_oldest_age_seconds", "celery_task_succeeded_total",
                   "celery_task_runtime_bucket", "celery_task_failed_total",
                   "kirana_http_request_duration_seconds_bucket", "kirana_dead_letters_total"):
        assert metric in exprs, metric


def test_given_the_dashboard_then_its_queries_name_only_exposed_metrics() -> None:
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        unknown = metric_names(expr) - KNOWN_METRICS
        assert not unknown, f"{expr!r} names {unknown}"


def test_given_grafana_provisioning_then_it_points_at_prometheus_and_the_dashboards() -> None:
    prov = ROOT / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    provider = yaml.safe_load((prov / "dashboards" / "kirana.yml").read_text())["providers"][0]
    assert datasource["type"] == "prometheus"
    for path in DASHBOARDS.glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"



def test_given_the_readme_then_it_links_the_deploy_guide() -> None:
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
