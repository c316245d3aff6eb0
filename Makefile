# Kirana: `make run` starts the whole stack, `make test` runs the tests.
# The virtualenv is created and filled on first use; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install run stop test test-unit test-e2e lint fmt seed db-indexes audit-verify health dead-letters chaos bench lock clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP):
	@command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP) ## create the virtualenv and install the pinned dependencies

run: install ## start the whole stack in the foreground (Ctrl-C stops it)
	$(PY) -m stack run

stop: install ## stop a stack started in the background
	$(PY) -m stack stop

test: install ## run every test (starts its own redis-server, nx-27017 and workers)
	$(PY) -m pytest

test-unit: install ## only the fast tests that need no servers
	$(PY) -m pytest tests/unit

test-e2e: install ## only the end-to-end tests through HTTP and real workers
	$(PY) -m pytest tests/e2e

lint: install ## ruff
	$(VENV)/bin/ruff check .

fmt: install ## ruff --fix
	$(VENV)/bin/ruff check --fix .

seed: install ## load the demo catalog into MONGO_URL (idempotent)
	$(PY) -m kirana.seed

db-indexes: install ## create the indexes the code relies on in MONGO_URL (idempotent)
	$(PY) -m migrations indexes

audit-verify: install ## walk the audit hash chain in MONGO_URL; exit 1 at the first break
	$(PY) -m kirana.audit verify

health: install ## each pool: live workers, queue length, last progress (exit 1 if one is down or stalled)
	$(PY) -m workers health

dead-letters: install ## list open dead letters (python -m tasks.dead_letters --help for replay/discard)
	$(PY) -m tasks.dead_letters list --status open

chaos: install ## the chaos suite: kill workers, restart Redis, stop MongoDB, poison messages, under load
	$(PY) -m pytest tests/chaos -m chaos -v

bench: install ## accept rate and latency of POST /api/v1/orders beside a bare apply_async route
	$(PY) -m bench $(BENCH_ARGS)

lock: install ## re-pin constraints.txt from what is installed
	{ echo "# Exact versions of every package Kirana installs (direct and transitive)."; \
	  echo "# Regenerate with: make lock"; $(VENV)/bin/pip freeze --exclude-editable; } > constraints.txt

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) var .pytest_cache .ruff_cache
