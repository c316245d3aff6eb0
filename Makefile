# Kirana: `make run` starts the whole stack, `make test` runs the tests, `make help` lists the rest.
# The virtualenvs are created and filled on first use; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt | cksum | cut -d' ' -f1)
# celery-exporter pins older redis and prometheus-client: its own virtualenv.
EXPORTER_VENV  := .venv-exporter
EXPORTER_STAMP := $(EXPORTER_VENV)/.installed-$(shell cksum < deploy/exporter-constraints.txt | cut -d' ' -f1)
# bandit and pip-audit: their own virtualenv, pinned apart from the product's.
SECURITY_VENV  := .venv-security
SECURITY_STAMP := $(SECURITY_VENV)/.installed-$(shell cksum < deploy/security-constraints.txt | cut -d' ' -f1)

IMAGE   ?= kirana:latest
COMPOSE_PROD := docker compose -f docker-compose.prod.yml
# Deploys: ENV_FILE holds the secrets (outside git); HEALTH_URL is checked after the rollout.
STAGING_ENV_FILE    ?= /etc/kirana/staging.env
PRODUCTION_ENV_FILE ?= /etc/kirana/production.env
STAGING_URL    ?= https://staging.kirana.example
PRODUCTION_URL ?= https://kirana.example
DEPLOY_WITH    ?= compose
KUBE_CONTEXT   ?=

.DEFAULT_GOAL := help
.PHONY: help install exporter tools ferretdb ferretdb-stock test-ferretdb \
        run stop logs seed fmt \
        test test-unit test-e2e check-deploy chaos fuzz demo bench soak bench-engine coverage \
        lint security \
        build k8s \
        docker-up docker-down docker-logs docker-ps \
        db-migrate db-status db-indexes db-backup db-restore db-validate db-backup-verify \
        health dead-letters audit-verify search-reindex search-status loyalty-refresh \
        deploy-staging deploy-production rollback \
        lock clean clean-docker

help: ## list the targets by group
	@awk 'BEGIN {FS = ":.*## "} \
	  /^##@ / {printf "\n%s\n", substr($$0, 5); next} \
	  /^[a-z0-9-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Setup

$(STAMP):
	@command -v redis-server >/dev/null || .ci/install-tools redis || { echo "redis-server is missing: apt-get install -y redis-server"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(SECURITY_STAMP):
	$(PYTHON) -m venv $(SECURITY_VENV)
	$(SECURITY_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/security-constraints.txt
	rm -f $(SECURITY_VENV)/.installed-*
	touch $@

$(EXPORTER_STAMP):
	$(PYTHON) -m venv $(EXPORTER_VENV)
	$(EXPORTER_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/exporter-constraints.txt
	rm -f $(EXPORTER_VENV)/.installed-*
	touch $@

# FerretDB (issue 22), from its Go module through the module proxy only, into .cache/ (git-ignored).
# `go install …/cmd/ferretdb@$(FERRETDB_VERSION)` builds a binary that panics: the module zip lacks
# the generated build/version/version.txt, so it is built from a copy of the module with that file,
# and with deploy/ferretdb/serialize-writes.patch: stock 1.24 applies two concurrent guarded updates
# of one document both (docs/mongodb-subset.md). `make ferretdb-stock` builds it unpatched.
FERRETDB_VERSION := v1.24.2
FERRETDB := .cache/go/bin/ferretdb
FERRETDB_STOCK := .cache/go/bin/ferretdb-stock
FERRETDB_PATCH := deploy/ferretdb/serialize-writes.patch
GO_ENV := GOFLAGS=-mod=mod GOMODCACHE=$(CURDIR)/.cache/go/mod GOCACHE=$(CURDIR)/.cache/go/build

.cache/ferretdb-module.json:
	@command -v go >/dev/null || { echo "make ferretdb: Go is missing (FerretDB is built from its Go module); install Go 1.26 or newer"; exit 1; }
	@mkdir -p .cache/go/bin
	$(GO_ENV) go mod download -json github.com/FerretDB/FerretDB@$(FERRETDB_VERSION) > $@.tmp && mv $@.tmp $@

# $(1): the binary; $(2): the patch to apply, if any.
define build_ferretdb
	rm -rf .cache/ferretdb-src
	cp -r "$$($(PY) -c 'import json; print(json.load(open(".cache/ferretdb-module.json"))["Dir"])')" .cache/ferretdb-src
	chmod -R u+w .cache/ferretdb-src
	echo $(FERRETDB_VERSION) > .cache/ferretdb-src/build/version/version.txt
	$(if $(2),patch -p1 -d .cache/ferretdb-src < $(2))
	cd .cache/ferretdb-src && $(GO_ENV) go build -o $(CURDIR)/$(1) ./cmd/ferretdb
	$(1) --version
endef

$(FERRETDB): .cache/ferretdb-module.json $(FERRETDB_PATCH)
	$(call build_ferretdb,$(FERRETDB),$(FERRETDB_PATCH))

$(FERRETDB_STOCK): .cache/ferretdb-module.json
	$(call build_ferretdb,$(FERRETDB_STOCK),)

ferretdb: install $(FERRETDB) ## build FerretDB $(FERRETDB_VERSION) from its Go module into .cache/, writes serialized (needs Go; issue 22)

ferretdb-stock: install $(FERRETDB_STOCK) ## the same FerretDB without Kirana's patch, to see the race it fixes (KIRANA_FERRETDB=.cache/go/bin/ferretdb-stock)

install: $(STAMP) ## create the virtualenv and install the pinned dependencies

exporter: $(EXPORTER_STAMP) ## celery-exporter's own virtualenv (.venv-exporter, deploy/exporter-constraints.txt)

tools: ## install redis-server, and promtool, amtool and nginx for the deploy checks (apt; only what is missing)
	.ci/install-tools

##@ Development

# The stack's output also goes to var/run/stack.log, for `make logs` in another terminal.
run: install exporter ## start the whole stack in the foreground, with Flower and celery-exporter (Ctrl-C stops it)
	@mkdir -p var/run
	bash -o pipefail -c '$(PY) -m stack run 2>&1 | tee var/run/stack.log'

stop: install ## stop a stack started in the background
	$(PY) -m stack stop

logs: ## follow the output of the stack `make run` started (var/run/stack.log)
	@test -f var/run/stack.log || { echo "no var/run/stack.log: start the stack with make run"; exit 1; }
	tail -n 200 -F var/run/stack.log

seed: install ## load the demo catalog into MONGO_URL (idempotent)
	$(PY) -m kirana.seed

fmt: install ## ruff --fix
	$(VENV)/bin/ruff check --fix .

##@ Test

test: install exporter ## every test, under coverage (fails below the floor in pyproject.toml); says which checks it skips
	@for tool in promtool amtool nginx; do \
	  command -v $$tool >/dev/null || echo "make test: $$tool is missing, so its checks are SKIPPED (make tools installs it)"; \
	done
	rm -rf .coverage-data && mkdir -p .coverage-data
	$(PY) -m coverage run -m pytest
	@$(PY) -m coverage combine -q
	@echo "line and branch coverage over every process: $$($(PY) -m coverage report --format=total)% (floor: fail_under in pyproject.toml; make coverage for the table)"
	@$(PY) -m coverage report --format=total >/dev/null

# The suite's MongoDB-backed tiers on FerretDB (issue 22): a second implementation of the wire
# protocol, so nothing passes only because of nx-27017's own behaviour. No coverage run: `make test` has it.
# CI runs FERRETDB_TIERS=tests/integration: on FerretDB's SQLite backend every filter but {_id: v}
# scans its whole collection, and 6 e2e tests miss their time limits (README, "Not built yet").
FERRETDB_TIERS ?= tests/integration tests/e2e
test-ferretdb: install exporter $(FERRETDB) ## the integration and e2e tests with FerretDB as the MongoDB (builds it; needs Go)
	KIRANA_TEST_MONGO=ferretdb $(PY) -m pytest $(FERRETDB_TIERS)

test-unit: install ## only the fast tests that need no servers
	$(PY) -m pytest tests/unit

test-e2e: install exporter ## only the end-to-end tests through HTTP and real workers
	$(PY) -m pytest tests/e2e

check-deploy: install ## only the deploy checks: compose, nginx -t, promtool, amtool, Grafana, Kubernetes
	$(PY) -m pytest tests/unit/test_deploy_files.py tests/unit/test_monitoring.py tests/unit/test_k8s.py

# Every case runs CHAOS_ROUNDS times (a race hit on most runs but not all must still be seen); one table at the end.
CHAOS_ROUNDS ?= 3
chaos: install ## the chaos suite, CHAOS_ROUNDS (3) times: kill workers, restart Redis, stop MongoDB, lost replies, under load
	@dir=$$(mktemp -d /tmp/kirana-chaos-XXXXXX); status=0; \
	for round in $$(seq 1 $(CHAOS_ROUNDS)); do \
	  echo "== chaos round $$round of $(CHAOS_ROUNDS) =="; \
	  KIRANA_CHAOS_DIR=$$dir/round-$$round KIRANA_CHAOS_ROUND=$$round $(PY) -m pytest tests/chaos -m chaos -v \
	    || status=1; \
	done; \
	echo "== chaos: every round =="; $(PY) -m tests.chaos.report $$dir || status=1; \
	echo "logs and results.json of every round: $$dir"; exit $$status

bench: install ## accept rate and latency of POST /api/v1/orders beside a bare apply_async route
	$(PY) -m bench $(BENCH_ARGS)

fuzz: install exporter ## schemathesis over the whole API against a private stack: 100 examples per operation, every example as every role
	KIRANA_FUZZ_EXAMPLES=100 KIRANA_FUZZ_ALL_ROLES=1 $(PY) -m pytest tests/e2e/test_contract_fuzz.py

demo: install ## with make run up: a customer places 300 mixed orders (COD, UPI, card with failures); live progress and a final table
	$(PY) -m client.demo $(DEMO_ARGS)

SOAK_ARGS ?=
soak: install exporter ## make run's whole stack fed cash orders (30/s, 10 min): queue lengths, commands/s by collection, drain, RSS growth
	$(PY) -m bench.soak $(SOAK_ARGS)

bench-engine: install ## Kirana's Celery beside stock Celery, Dramatiq and Huey (bench-only .venv-bench): tasks/s, CPU per task, enqueue rate
	$(PY) -m bench.engine $(BENCH_ARGS)

coverage: install exporter ## the coverage table of the last make test (or a new run if there is none), and htmlcov/
	@if [ ! -f .coverage-data/coverage ]; then rm -rf .coverage-data && mkdir -p .coverage-data && \
	  $(PY) -m coverage run -m pytest && $(PY) -m coverage combine -q; fi
	$(PY) -m coverage report
	$(PY) -m coverage html -q -d htmlcov

##@ Lint

security: $(SECURITY_STAMP) ## bandit (new findings past deploy/bandit-baseline.json) and pip-audit of constraints.txt; docs/security-scan.md
	$(SECURITY_VENV)/bin/python deploy/security_scan.py

lint: install ## ruff, and deploy/k8s/workers.yaml up to date with the pool table
	$(VENV)/bin/ruff check .
	$(PY) -m workers.k8s --check

##@ Build

build: ## build the image (deploy/Dockerfile, multi-stage, non-root) as IMAGE=kirana:latest
	docker build -f deploy/Dockerfile --target runtime -t $(IMAGE) .

k8s: install ## regenerate deploy/k8s/workers.yaml from the pool table (after adding a pool or queue)
	$(PY) -m workers.k8s

##@ Docker (development compose: hot reload, Flower, Mongo Express, celery-exporter)

docker-up: ## docker compose up --build -d (docker-compose.yml)
	docker compose up --build -d

docker-down: ## stop the development containers (data volumes kept)
	docker compose down

docker-logs: ## follow the development containers' logs (SERVICE=worker-orders for one)
	docker compose logs -f --tail=200 $(SERVICE)

docker-ps: ## the development containers and their health
	docker compose ps

##@ Database

db-migrate: install ## apply pending migrations to MONGO_URL (python -m migrations up)
	$(PY) -m migrations up

db-status: install ## which migrations are applied and pending
	$(PY) -m migrations status

db-indexes: install ## create the indexes the code relies on in MONGO_URL (idempotent)
	$(PY) -m migrations indexes

db-backup: install ## take a backup of MONGO_URL now (python -m kirana.backups run)
	$(PY) -m kirana.backups run

db-restore: install ## restore BACKUP=<id> into DB=<database> (a new database; add --drop by hand to replace)
	@test -n "$(BACKUP)" -a -n "$(DB)" || { echo "usage: make db-restore BACKUP=<backup id> DB=<target database>"; exit 2; }
	$(PY) -m kirana.backups restore $(BACKUP) --into $(DB)

db-validate: install ## the live collections and indexes against what the migrations declare (exit 1 on drift)
	$(PY) -m migrations validate

db-backup-verify: install ## restore the latest backup into a scratch database and compare counts and checksums
	$(PY) -m kirana.backups verify

##@ Operations

search-reindex: install ## rebuild the product search index now, with a progress bar (searches see the old one until the swap)
	$(PY) -m kirana.search reindex

search-status: install ## the search index's version, size and lag
	$(PY) -m kirana.search status

loyalty-refresh: install ## rebuild every leaderboard from the loyalty ledger now
	$(PY) -m kirana.loyalty refresh

health: install ## each pool: live workers, queue length, last progress (exit 1 if one is down or stalled)
	$(PY) -m workers health

dead-letters: install ## list open dead letters (python -m tasks.dead_letters --help for replay/discard)
	$(PY) -m tasks.dead_letters list --status open

audit-verify: install ## walk the audit hash chain in MONGO_URL; exit 1 at the first break
	$(PY) -m kirana.audit verify

##@ Deploy (docs/deploy.md; DEPLOY_WITH=compose|kubectl, IMAGE=registry/kirana:<tag>)

deploy-staging: ## roll IMAGE out to staging, then wait for /readyz at STAGING_URL
	deploy/deploy.sh staging $(DEPLOY_WITH) $(IMAGE) $(STAGING_ENV_FILE) $(STAGING_URL) $(KUBE_CONTEXT)

deploy-production: ## roll IMAGE out to production, then wait for /readyz at PRODUCTION_URL
	deploy/deploy.sh production $(DEPLOY_WITH) $(IMAGE) $(PRODUCTION_ENV_FILE) $(PRODUCTION_URL) $(KUBE_CONTEXT)

rollback: ## kubectl: undo the last rollout of every Deployment; compose: make deploy-production IMAGE=<previous tag>
	@test "$(DEPLOY_WITH)" = kubectl || { echo "with compose, redeploy the previous tag: make deploy-production IMAGE=<previous>"; exit 2; }
	kubectl $(if $(KUBE_CONTEXT),--context $(KUBE_CONTEXT)) -n kirana get deploy -o name \
	  | xargs -n1 kubectl $(if $(KUBE_CONTEXT),--context $(KUBE_CONTEXT)) -n kirana rollout undo

##@ Cleanup

lock: install ## re-pin constraints.txt from what is installed
	{ echo "# Exact versions of every package Kirana installs (direct and transitive)."; \
	  echo "# Regenerate with: make lock"; $(VENV)/bin/pip freeze --exclude-editable; } > constraints.txt

clean: ## remove the virtualenvs and local data
	rm -rf $(VENV) $(EXPORTER_VENV) $(SECURITY_VENV) var .pytest_cache .ruff_cache .coverage-data

clean-docker: ## remove the development containers AND their data volumes
	docker compose down -v
