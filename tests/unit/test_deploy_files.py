"""The Dockerfile, both compose files and nginx.conf agree with the pool table and the queues."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.queues import Queue
from workers.pools import POOLS, Pool, beat_command, worker_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.prod.yml")
QUEUE_NAMES = {q.value for q in Queue}

Services = dict[str, dict[str, Any]]


def services(name: str) -> Services:
    return yaml.safe_load((ROOT / name).read_text())["services"]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def app_services(svcs: Services) -> Services:
    """The services that run the Kirana image (the one the api runs)."""
    return {name: svc for name, svc in svcs.items() if svc.get("image") == svcs["api"]["image"]}


@pytest.fixture(autouse=True)
def _table_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose files pin the table's values; no environment override may change worker_command."""
    monkeypatch.delenv("KIRANA_WORKER_LOGLEVEL", raising=False)
    for pool in POOLS:
        monkeypatch.delenv(f"KIRANA_POOL_{pool.name.upper()}_CONCURRENCY", raising=False)


@pytest.mark.parametrize("compose", COMPOSE_FILES)
@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_given_a_pool_when_composed_then_its_worker_service_runs_worker_command(compose: str, pool: Pool) -> None:
    command = services(compose)[f"worker-{pool.name}"]["command"]
    expected = worker_command(pool, python="python")

    assert flag(command, "-Q") == ",".join(q.value for q in pool.queues)
    assert flag(command, "-n") == f"{pool.name}@{pool.name}.%h"
    assert flag(command, "-P") == pool.pool
    assert flag(command, "--prefetch-multiplier") == str(pool.prefetch_multiplier)
    assert flag(command, "-c") == str(pool.concurrency)
    assert command == expected


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_given_compose_then_worker_services_are_exactly_the_pools(compose: str) -> None:
    workers = {name for name in services(compose) if name.startswith("worker-")}
    assert workers == {f"worker-{pool.name}" for pool in POOLS}


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_given_compose_then_no_service_consumes_an_unknown_queue(compose: str) -> None:
    for name, svc in services(compose).items():
        command = svc.get("command")
        if isinstance(command, list) and "-Q" in command:
            assert set(flag(command, "-Q").split(",")) <= QUEUE_NAMES, name


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_given_compose_then_exactly_one_beat_runs(compose: str) -> None:
    svcs = services(compose)
    beats = [name for name, svc in svcs.items() if "beat" in (svc.get("command") or [])]

    assert beats == ["beat"]
    assert svcs["beat"]["command"] == beat_command("/tmp/celerybeat-schedule", python="python")
    assert svcs["beat"].get("deploy", {}).get("replicas", 1) == 1


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_given_compose_then_every_app_service_knows_redis_and_mongo(compose: str) -> None:
    svcs = app_services(services(compose))

    assert {"api", "beat", "flower"} | {f"worker-{p.name}" for p in POOLS} <= set(svcs)
    for name, svc in svcs.items():
        assert {"REDIS_URL", "MONGO_URL"} <= set(svc["environment"]), name


def test_given_prod_compose_then_redis_requires_a_password() -> None:
    svcs = services("docker-compose.prod.yml")

    assert "--requirepass" in svcs["redis"]["command"]
    assert "${REDIS_PASSWORD:?" in flag(svcs["redis"]["command"], "--requirepass")
    for name, svc in app_services(svcs).items():
        assert re.match(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/", svc["environment"]["REDIS_URL"]), name


def test_given_prod_compose_then_tokens_are_signed_with_a_required_secret() -> None:
    for name, svc in app_services(services("docker-compose.prod.yml")).items():
        assert svc["environment"]["TOKEN_SECRET"].startswith("${TOKEN_SECRET:?"), name


def test_given_prod_compose_then_mongo_is_a_replica_set() -> None:
    svcs = services("docker-compose.prod.yml")

    assert flag(svcs["mongo"]["command"], "--replSet") == "rs0"
    assert "rs.initiate(" in svcs["mongo-init"]["command"][-1]
    for name, svc in app_services(svcs).items():
        assert svc["environment"]["MONGO_URL"].endswith("?replicaSet=rs0"), name
        assert svc["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully", name


def test_given_prod_compose_then_services_restart_are_limited_and_logs_rotate() -> None:
    for name, svc in services("docker-compose.prod.yml").items():
        if name != "mongo-init":
            assert svc["restart"] == "unless-stopped", name
        assert {"cpus", "memory"} <= set(svc["deploy"]["resources"]["limits"]), name
        assert {"max-size", "max-file"} <= set(svc["logging"]["options"]), name
        assert not any(":/app" in str(v) for v in svc.get("volumes", [])), f"{name} mounts source"


def test_given_dockerfile_then_it_installs_pinned_runtime_deps_as_non_root() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    dockerfile = "\n".join(line for line in lines if not line.lstrip().startswith("#"))

    assert re.search(r"^COPY .*\bconstraints\.txt\b", dockerfile, re.M)
    assert re.search(r"pip install .*-r requirements\.txt -c constraints\.txt", dockerfile)
    assert "requirements-dev" not in dockerfile
    assert re.search(r"^USER kirana$", dockerfile, re.M)


def test_given_nginx_conf_then_it_proxies_to_api_and_hides_metrics() -> None:
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    upstream = re.search(r"upstream (\w+) \{[^}]*server api:8000\b", conf)

    assert upstream, "no upstream with server api:8000"
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert "client_max_body_size 64k;" in conf
    assert re.search(r"location = /metrics \{\s*return 404;", conf)
