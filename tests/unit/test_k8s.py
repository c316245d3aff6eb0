"""deploy/k8s agrees with the pool table: a Deployment and a KEDA ScaledObject per pool, one beat, probed API."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.app import SOFT_SHUTDOWN_S
from tasks.queues import DELIVERY, Queue
from workers import k8s
from workers.pools import POOLS, Pool

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


@functools.cache
def all_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in all_docs() if d["kind"] == kind}


def test_given_the_pool_table_then_workers_yaml_is_what_the_generator_writes() -> None:
    assert (K8S / "workers.yaml").read_text() == k8s.render(), "stale: run python -m workers.k8s"
    assert k8s.main(["--check"]) == 0


def test_given_a_new_pool_then_the_checked_in_file_is_stale_until_regenerated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    extra = Pool("sync", (Queue.ORDERS,), "prefork", 1)
    monkeypatch.setattr(k8s, "POOLS", (*POOLS, extra))
    monkeypatch.setitem(k8s.SCALING, "sync", k8s.Scaling(1, 3, 10, "500m", "512Mi"))

    assert "worker-sync" in k8s.render()
    assert k8s.main(["--check"]) == 1


def test_given_a_pool_without_scaling_bounds_then_the_generator_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "POOLS", (*POOLS, Pool("nonesuch", (Queue.AUDIT,), "prefork", 1)))
    with pytest.raises(SystemExit, match="nonesuch"):
        k8s.render()


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_given_a_pool_then_its_deployment_runs_its_worker_command_and_outlasts_a_task(pool: Pool) -> None:
    deployment = of_kind("Deployment")[f"worker-{pool.name}"]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    command = container["command"]

    assert command[command.index("-Q") + 1] == ",".join(q.value for q in pool.queues)
    assert command[command.index("-n") + 1] == f"{pool.name}@{pool.name}.%h"
    assert command[command.index("-c") + 1] == str(pool.concurrency)
    assert spec["terminationGracePeriodSeconds"] > SOFT_SHUTDOWN_S + max(
        DELIVERY[q].visibility_timeout_s for q in pool.queues)
    assert {"configMapRef": {"name": "kirana-config"}} in container["envFrom"]
    assert {"secretRef": {"name": "kirana-secrets"}} in container["envFrom"]
    assert f"{pool.name}@{pool.name}.$HOSTNAME" in container["livenessProbe"]["exec"]["command"][-1]
    assert spec["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_given_a_pool_then_keda_scales_it_on_its_queues_within_bounds(pool: Pool) -> None:
    scaled = of_kind("ScaledObject")[f"worker-{pool.name}"]["spec"]
    redis_lists = [t["metadata"]["listName"] for t in scaled["triggers"] if t["type"] == "redis"]
    queries = [t["metadata"]["query"] for t in scaled["triggers"] if t["type"] == "prometheus"]

    assert scaled["scaleTargetRef"]["name"] in of_kind("Deployment")
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert redis_lists == [q.value for q in pool.queues]
    for queue in pool.queues:
        # Reserved (unacked) messages count too, or busy workers would be scaled away.
        assert any(f'kirana_queue_reserved{{queue="{queue.value}"}}' in q for q in queries)


def test_given_every_queue_then_exactly_one_scaled_object_watches_it() -> None:
    watched = [t["metadata"]["listName"] for so in of_kind("ScaledObject").values()
               for t in so["spec"]["triggers"] if t["type"] == "redis"]
    assert sorted(watched) == sorted(q.value for q in Queue)


def test_given_every_workload_then_its_selector_matches_its_pod_labels_and_services_find_pods() -> None:
    deployments = of_kind("Deployment")
    for name, d in deployments.items():
        selector = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert d["metadata"]["namespace"] == "kirana", name
    for name, svc in of_kind("Service").items():
        selector = svc["spec"]["selector"]
        assert any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values()), f"service {name} selects no pod"


def test_given_beat_then_one_replica_replaced_not_rolled() -> None:
    beat = of_kind("Deployment")["beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert "beat" not in of_kind("ScaledObject")


def test_given_the_api_then_liveness_is_healthz_and_readiness_is_readyz() -> None:
    api = of_kind("Deployment")["api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert of_kind("Service")["api"]["spec"]["ports"][0]["port"] == 8000


def test_given_the_manifests_then_no_secret_is_checked_in_and_kustomize_lists_every_file() -> None:
    assert not of_kind("Secret")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_given_the_exporter_then_it_watches_every_queue() -> None:
    args = of_kind("Deployment")["celery-exporter"]["spec"]["template"]["spec"]["containers"][0]["args"]
    queues = next(a for a in args if a.startswith("--queues="))
    assert set(queues.removeprefix("--queues=").split(",")) == {q.value for q in Queue}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing: kustomize build not checked")
def test_given_kustomize_then_it_builds_every_object() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(built) == len(all_docs())


def test_given_the_backups_pool_then_it_writes_to_a_claimed_volume_at_backup_dir() -> None:
    backup_dir = of_kind("ConfigMap")["kirana-config"]["data"]["BACKUP_DIR"]
    spec = of_kind("Deployment")["worker-backups"]["spec"]
    pod = spec["template"]["spec"]

    assert pod["containers"][0]["volumeMounts"] == [{"name": "backups", "mountPath": backup_dir}]
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim in of_kind("PersistentVolumeClaim")
    assert spec["strategy"] == {"type": "Recreate"}


def test_given_the_manifests_then_production_is_declared_and_flower_checks_its_secrets_first() -> None:
    """A key missing from the Secret must stop the pod (kirana.preflight), not fall back to a sandbox default."""
    config = of_kind("ConfigMap")["kirana-config"]
    assert config["data"]["KIRANA_ENV"] == "production"
    flower = of_kind("Deployment")["flower"]["spec"]["template"]["spec"]["containers"][0]
    assert flower["command"][2].startswith("python -m kirana.preflight --flower && exec python -m celery")
