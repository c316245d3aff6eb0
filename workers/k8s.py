"""Generate deploy/k8s/workers.yaml from the pool table: a Deployment and a KEDA ScaledObject per pool.

    python -m workers.k8s           write deploy/k8s/workers.yaml
    python -m workers.k8s --check   exit 1 if the file differs from what the table gives (CI, make lint)

A new pool (or queue) in workers/pools.py needs a row in SCALING below (the
generator refuses to guess its bounds), then a re-run of this command.

Scaling and reserved tasks. KEDA's redis scaler reads LLEN of the queue's list,
which holds only messages no worker has taken. A message a worker reserved
(prefetched, running, or waiting on a retry ETA) sits in the queue's unacked hash
(`unacked:<queue>`, tasks/queues.transport_options), invisible to LLEN. A pool
whose list is empty while every worker is busy would look idle and be scaled
down under its running tasks. So each ScaledObject has two triggers and KEDA
follows the larger: the redis list length (works with nothing but Redis), and a
prometheus query of waiting + reserved (kirana_queue_length + kirana_queue_reserved,
from the API's /metrics). Scale-down is slow (cooldown and a stabilization
window), and a removed pod gets a warm shutdown: terminationGracePeriodSeconds is
longer than the queue's longest task plus the soft shutdown, and with acks_late a
task cut off anyway goes back to the queue. minReplicaCount is at least 1 for
every pool: /readyz wants a live worker in each, and a cold start would add
seconds to the first order after a quiet spell.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.app import SOFT_SHUTDOWN_S
from tasks.queues import DELIVERY
from workers.pools import POOLS, Pool, node_name, worker_command

OUT = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "workers.yaml"
NAMESPACE = "kirana"
IMAGE = "kirana:latest"  # kustomization.yaml `images:` sets the real registry and tag
REDIS_ADDRESS = "redis.kirana.svc.cluster.local:6379"
PROMETHEUS = "http://prometheus.monitoring.svc.cluster.local:9090"
# The longest hard time limit of any task (tasks/app.py default 90 s; tasks set theirs lower).
LONGEST_HARD_LIMIT_S = 90


@dataclass(frozen=True)
class Scaling:
    min_replicas: int
    max_replicas: int
    # Waiting messages per replica before KEDA adds one.
    list_length: int
    cpu: str
    memory: str
    # A PersistentVolumeClaim mounted at BACKUP_DIR (config.yaml), for the pool that writes backups.
    backup_volume: bool = False


SCALING: dict[str, Scaling] = {
    "orders": Scaling(1, 10, 10, "1", "1Gi"),
    "payments": Scaling(1, 6, 10, "1", "1Gi"),
    "webhooks": Scaling(1, 4, 20, "500m", "512Mi"),
    "search": Scaling(1, 4, 50, "500m", "512Mi"),
    "leaderboards": Scaling(1, 2, 5, "500m", "512Mi"),
    # One backup at a time: a second replica would only wait on the run-once lock.
    "backups": Scaling(1, 1, 1, "500m", "512Mi", backup_volume=True),
    "notifications": Scaling(1, 6, 50, "500m", "512Mi"),
    "audit": Scaling(1, 2, 50, "500m", "512Mi"),
    # Queues the mobile work adds (briefs/names.md); used once their pools are in POOLS.
    "sync": Scaling(1, 6, 20, "500m", "512Mi"),
    "analytics": Scaling(1, 2, 50, "500m", "512Mi"),
}

LABELS = {"app.kubernetes.io/name": "kirana", "app.kubernetes.io/part-of": "kirana"}


class _Dumper(yaml.SafeDumper):
    """No &anchors / *aliases: each document reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def table_command(pool: Pool) -> list[str]:
    """worker_command with the table's values, whatever this shell's KIRANA_POOL_*/LOGLEVEL overrides say."""
    argv = worker_command(pool, python="python")
    argv[argv.index("-l") + 1] = pool.loglevel
    if "-c" in argv:
        argv[argv.index("-c") + 1] = str(pool.concurrency)
    return argv


def grace_seconds(pool: Pool) -> int:
    """Longer than the queue's longest task and the soft shutdown: a scale-down finishes what it runs."""
    longest = max(max(DELIVERY[q].visibility_timeout_s, LONGEST_HARD_LIMIT_S) for q in pool.queues)
    return longest + SOFT_SHUTDOWN_S + 10


BACKUP_DIR = "/backups"  # the same as BACKUP_DIR in deploy/k8s/config.yaml


def deployment(pool: Pool, scaling: Scaling) -> dict[str, Any]:
    labels = {**LABELS, "app.kubernetes.io/component": "worker", "kirana/pool": pool.name}
    node = node_name(pool).replace("%h", "$HOSTNAME")
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"worker-{pool.name}", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            # KEDA owns the replica count from here on; this is the count before it acts.
            "replicas": scaling.min_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kirana", "kirana/pool": pool.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": grace_seconds(pool),
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
                    "containers": [{
                        "name": "worker",
                        "image": IMAGE,
                        "command": table_command(pool),
                        "envFrom": [{"configMapRef": {"name": "kirana-config"}},
                                    {"secretRef": {"name": "kirana-secrets"}}],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "256Mi"},
                            "limits": {"cpu": scaling.cpu, "memory": scaling.memory},
                        },
                        # This pod's own worker answers a ping over the broker.
                        "livenessProbe": {
                            "exec": {"command": [
                                "sh", "-c",
                                f'celery -A tasks.app inspect ping -d "{node}" --timeout 10 | grep -q pong',
                            ]},
                            "initialDelaySeconds": 30, "periodSeconds": 60, "timeoutSeconds": 20,
                            "failureThreshold": 3,
                        },
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False},
                    }],
                },
            },
        },
    }
    if scaling.backup_volume:
        spec = doc["spec"]["template"]["spec"]  # type: ignore[index]
        spec["containers"][0]["volumeMounts"] = [{"name": "backups", "mountPath": BACKUP_DIR}]
        spec["volumes"] = [{"name": "backups", "persistentVolumeClaim": {"claimName": "kirana-backups"}}]
        spec["securityContext"]["fsGroup"] = 10001
        # One writer of the volume at a time: the old pod stops before the new one starts.
        doc["spec"]["strategy"] = {"type": "Recreate"}  # type: ignore[index]
    return doc


def scaled_object(pool: Pool, scaling: Scaling) -> dict[str, Any]:
    triggers: list[dict[str, Any]] = []
    for queue in pool.queues:
        triggers.append({
            "type": "redis",
            "metadata": {
                "address": REDIS_ADDRESS, "listName": queue.value, "databaseIndex": "0",
                "listLength": str(scaling.list_length),
                # Above min replicas only once something waits.
                "activationListLength": "0",
            },
            "authenticationRef": {"name": "kirana-redis"},
        })
        triggers.append({
            "type": "prometheus",
            "metadata": {
                "serverAddress": PROMETHEUS,
                # Waiting + reserved: busy workers count, so they are not scaled away mid-task.
                "query": (f'max(kirana_queue_length{{queue="{queue.value}"}})'
                          f' + max(kirana_queue_reserved{{queue="{queue.value}"}})'),
                "threshold": str(scaling.list_length + pool.concurrency),
                "activationThreshold": "0",
                "ignoreNullValues": "true",
            },
        })
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"worker-{pool.name}", "namespace": NAMESPACE,
                     "labels": {**LABELS, "app.kubernetes.io/component": "worker", "kirana/pool": pool.name}},
        "spec": {
            "scaleTargetRef": {"name": f"worker-{pool.name}"},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": 300,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            }}}},
            "triggers": triggers,
        },
    }


def documents() -> list[dict[str, Any]]:
    missing = [p.name for p in POOLS if p.name not in SCALING]
    if missing:
        raise SystemExit(f"workers/k8s.py SCALING has no row for pool(s) {', '.join(missing)}: add one")
    docs: list[dict[str, Any]] = []
    for pool in POOLS:
        docs += [deployment(pool, SCALING[pool.name]), scaled_object(pool, SCALING[pool.name])]
    return docs


def render() -> str:
    header = ("# GENERATED by `python -m workers.k8s` from workers/pools.py POOLS and workers/k8s.py SCALING.\n"
              "# Do not edit: change the tables and re-run (tests/unit/test_k8s.py fails when this file is stale).\n")
    body = yaml.dump_all(documents(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return header + "---\n" + body


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python -m workers.k8s", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(POOLS)} pools)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
