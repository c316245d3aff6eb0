"""The Dockerfile, both compose files and nginx.conf agree with the pool table and the queues."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.app import SOFT_SHUTDOWN_S
from tasks.queues import Queue
from workers.pools import POOLS, Pool, beat_command, worker_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.prod.yml")
QUEUE_NAMES = {q.value for q in Queue}

Services = dict[str, dict[str, Any]]


def services(name: str) -> Services:
    return yaml.safe_load((ROOT / name).read_text())["services"]


RELOAD = ["python", "-m", "stack.reload", "--"]


def run_command(compose: str, svc: dict[str, Any]) -> list[str]:
    """The command a service runs; development runs it under stack.reload (restart on a source change)."""
    command = svc["command"]
    if compose == "docker-compose.yml" and command[:4] == RELOAD:
        return command[4:]
    return command


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


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
    command = run_command(compose, services(compose)[f"worker-{pool.name}"])
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
def test_given_compose_then_every_queue_is_consumed(compose: str) -> None:
    consumed = set()
    for svc in services(compose).values():
        command = svc.get("command")
        if isinstance(command, list) and "-Q" in command:
            consumed |= set(flag(command, "-Q").split(","))
    assert consumed == QUEUE_NAMES


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_given_compose_then_exactly_one_beat_runs(compose: str) -> None:
    svcs = services(compose)
    beats = [name for name, svc in svcs.items() if "beat" in (svc.get("command") or [])]

    assert beats == ["beat"]
    assert run_command(compose, svcs["beat"]) == beat_command("/tmp/celerybeat-schedule", python="python")
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
        assert "?replicaSet=rs0&authSource=admin" in svc["environment"]["MONGO_URL"], name
        assert svc["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully", name


def test_given_prod_compose_then_mongodb_requires_authentication_and_kirana_has_its_own_user() -> None:
    """Issue 20: MongoDB in the prod compose runs with authentication; the init container makes the users."""
    svcs = services("docker-compose.prod.yml")
    mongo = svcs["mongo"]
    assert "--auth" in mongo["command"] and flag(mongo["command"], "--keyFile") == "/data/keyfile"
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
    assert "/run/secrets/mongo_keyfile" in mongo["entrypoint"][2] and "mongo_keyfile" in mongo["secrets"]
    init = svcs["mongo-init"]["command"][-1]
    assert "createUser" in init and 'role: "readWrite", db: process.env.MONGO_DB' in init
    assert '-u "$$MONGO_ROOT_USER"' in init
    for name, svc in app_services(svcs).items():
        assert svc["environment"]["MONGO_URL"].startswith(
            "mongodb://kirana:${MONGO_APP_PASSWORD:?set MONGO_APP_PASSWORD}@mongo:27017/"), name
    assert "exporter:${MONGO_EXPORTER_PASSWORD:?" in svcs["mongodb-exporter"]["command"][0]


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


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_given_dev_compose_then_workers_restart_on_a_source_change(pool: Pool) -> None:
    svcs = services("docker-compose.yml")

    assert svcs[f"worker-{pool.name}"]["command"][:4] == RELOAD
    assert ".:/app" in svcs[f"worker-{pool.name}"]["volumes"]
    assert "--reload" in svcs["api"]["command"]
    assert {"flower", "mongo-express", "celery-exporter"} <= set(svcs)


@pytest.mark.parametrize("compose", COMPOSE_FILES)
@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_given_compose_then_workers_outlast_the_soft_shutdown_when_stopped(compose: str, pool: Pool) -> None:
    svc = services(compose)[f"worker-{pool.name}"]
    assert seconds(svc["stop_grace_period"]) > SOFT_SHUTDOWN_S + 60  # + the longest hard time limit


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_given_prod_compose_then_each_worker_has_replicas_limits_and_a_health_check_of_its_own_node(
        pool: Pool) -> None:
    svc = services("docker-compose.prod.yml")[f"worker-{pool.name}"]

    assert svc["deploy"]["replicas"] >= 1
    assert {"cpus", "memory"} <= set(svc["deploy"]["resources"]["limits"])
    check = " ".join(svc["healthcheck"]["test"])
    node = flag(svc["command"], "-n").replace("%h", "$$HOSTNAME")
    assert f"inspect ping -d {node} " in check


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_given_compose_then_celery_exporter_watches_every_queue_at_the_pinned_version(compose: str) -> None:
    exporter = services(compose)["celery-exporter"]
    pinned = re.search(r"^prometheus-exporter-celery==(\S+)$",
                       (ROOT / "deploy" / "exporter-constraints.txt").read_text(), re.M)

    assert pinned and exporter["image"] == f"danihodovic/celery-exporter:{pinned.group(1)}"
    queues = next(arg for arg in exporter["command"] if arg.startswith("--queues="))
    assert set(queues.removeprefix("--queues=").split(",")) == QUEUE_NAMES


def test_given_prod_compose_then_the_whole_monitoring_stack_runs() -> None:
    svcs = services("docker-compose.prod.yml")

    assert {"celery-exporter", "prometheus", "alertmanager", "grafana", "redis-exporter", "mongodb-exporter",
            "node-exporter", "nginx-exporter", "flower"} <= set(svcs)
    assert "./deploy/prometheus:/etc/prometheus:ro" in svcs["prometheus"]["volumes"]
    assert svcs["api"]["deploy"]["replicas"] >= 2
    for name in ("api", "nginx", "ws", "flower", "prometheus", "alertmanager", "grafana", "redis", "mongo"):
        assert svcs[name]["healthcheck"]["test"], name


def test_given_prod_compose_then_redis_keeps_tasks_on_disk_and_never_evicts() -> None:
    command = services("docker-compose.prod.yml")["redis"]["command"]
    assert flag(command, "--appendonly") == "yes"
    assert flag(command, "--maxmemory-policy") == "noeviction"


def test_given_prod_compose_then_no_secret_value_is_written_in_it() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.prod.yml").read_text())
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|AUTH", re.I)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and secretish.search(str(key)):
                    assert value.startswith("${") and ":?" in value, f"{path}.{key} holds a literal value"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(doc["services"], "services")
    for secret in doc["secrets"].values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()


def test_given_dockerfile_then_it_builds_in_stages_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.M)

    assert stages == ["build", "runtime"]
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "build-essential" not in runtime
    assert re.search(r"^USER kirana$", runtime, re.M)


def test_given_nginx_conf_then_tls_fronts_the_api_and_websockets() -> None:
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()

    assert re.search(r"listen 443 ssl", conf)
    assert "return 301 https://$host$request_uri;" in conf
    ws = re.search(r"location /ws/ \{(.*?)\n        \}", conf, re.S)
    assert ws and "proxy_set_header Upgrade    $http_upgrade;" in ws.group(1)


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="nginx or openssl missing: apt-get install nginx-light (CI installs it)")
def test_given_nginx_conf_then_nginx_t_accepts_it(tmp_path: Path) -> None:
    """nginx -t on the real file, with a throwaway certificate and local upstream addresses.

    Two substitutions, both about this machine and not the config: the service names
    `api`/`ws` do not resolve outside compose, and `resolve` on an upstream server
    needs nginx >= 1.27.3 (the image's 1.28; Debian's is older).
    """
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=kirana.test", "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")],
                   check=True, capture_output=True, timeout=60)
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "server api:8000 resolve;" in conf and "server ws:8001 resolve;" in conf
    conf = (conf.replace("/etc/nginx/certs/", f"{certs}/")
            .replace("server api:8000 resolve;", "server 127.0.0.1:8000;")
            .replace("server ws:8001 resolve;", "server 127.0.0.1:8001;"))
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\n" + conf)

    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            check=False, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_given_prod_compose_then_backups_land_on_a_volume_the_backups_worker_mounts() -> None:
    svcs = services("docker-compose.prod.yml")
    backup_dir = svcs["worker-backups"]["environment"]["BACKUP_DIR"]

    assert f"backups:{backup_dir}" in svcs["worker-backups"]["volumes"]
    assert "backups" in yaml.safe_load((ROOT / "docker-compose.prod.yml").read_text())["volumes"]


def test_the_images_api_command_is_the_stacks() -> None:
    # The Dockerfile says "same flags as stack/commands.api_command": hold it to that
    # (it had drifted once: a gunicorn access log beside api/tracing.py's JSON line).
    import json

    from kirana.config import Settings
    from stack.commands import api_command

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    found = re.search(r'^CMD (\[.*?\])\s*$', dockerfile.replace("\\\n", ""), re.M | re.S)
    assert found, "no exec-form CMD in deploy/Dockerfile"
    image = json.loads(found.group(1))
    stack = api_command(Settings(), port=8000)
    stack[0] = Path(stack[0]).name
    stack[stack.index("--bind") + 1] = "0.0.0.0:8000"
    assert image == stack


def test_given_prod_compose_then_every_secret_preflight_checks_is_required_and_production_is_declared() -> None:
    """Issue 20: no Kirana process in production falls back to the repository's sandbox secrets."""
    from kirana import preflight
    from kirana.config import ENV_NAMES

    svcs = services("docker-compose.prod.yml")
    for name, svc in app_services(svcs).items():
        env = svc["environment"]
        assert env["KIRANA_ENV"] == "production", name
        for field in preflight.SECRETS:
            var = ENV_NAMES[field]
            assert str(env.get(var, "")).startswith(f"${{{var}:?"), f"{name}: {var}"
        for var in ("SMS_BASE_URL", "PUSH_BASE_URL"):
            assert str(env.get(var, "")).startswith(f"${{{var}:?"), f"{name}: {var}"
    flower = svcs["flower"]
    assert flower["command"][:2] == ["sh", "-c"]
    assert flower["command"][2].startswith("python -m kirana.preflight --flower && exec python -m celery")
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


def test_given_prod_compose_then_the_api_trusts_exactly_nginx_for_the_client_address() -> None:
    svcs = services("docker-compose.prod.yml")
    for name in ("api", "ws"):
        assert svcs[name]["environment"]["TRUSTED_PROXY_HOPS"] == "1", name
        assert svcs[name]["environment"]["KIRANA_ENV"] == "production", name  # the rest of the block is kept
    for name, svc in app_services(svcs).items():
        if name not in ("api", "ws"):
            assert "TRUSTED_PROXY_HOPS" not in svc["environment"], name
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;" in conf


def test_given_nginx_conf_then_auth_routes_are_rate_limited_and_sockets_capped_per_address() -> None:
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "limit_req_zone $binary_remote_addr zone=kirana_auth:10m rate=10r/m;" in conf
    auth = conf.split("location ~ ^/api/v1/auth/(login|register|refresh|2fa) {", 1)[1].split("}", 1)[0]
    assert "limit_req zone=kirana_auth burst=5 nodelay;" in auth and "proxy_pass http://kirana_api;" in auth
    ws = conf.split("location /ws/ {", 1)[1].split("}", 1)[0]
    assert "limit_conn kirana_ws_per_addr 20;" in ws
    assert "limit_req_status 429;" in conf and "limit_conn_status 429;" in conf
