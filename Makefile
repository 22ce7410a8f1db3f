# Clawfleet: `make run` starts everything on http://127.0.0.1:8000, `make test` runs the suite.
# Both install what is missing first (Python packages, Redis, Docker engine, the OpenClaw image).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
OPENCLAW_VERSIONS ?= 2026.9.6 2026.9.5
TEST_ENV := FLEET_STATE_STRICT=true FLEET_EGRESS_RESOLVE_NAMES=false DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/clawfleet} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/2} \
	CACHE_URL=$${TEST_CACHE_URL:-redis://127.0.0.1:6379/3}

.PHONY: run test lint fmt bench venv redis postgres docker image test-image chromium check clean
.PHONY: firewall caddy swarm-lab-deps

# DEBUG is off unless set (fleet/settings.py): development, the suite and the benchmarks set it.
run test bench check: export DEBUG ?= true

run: venv redis docker image firewall caddy
	$(PY) manage.py migrate --noinput
	$(PY) manage.py fleet_bootstrap
	$(PY) manage.py bootstrap_demo
	@echo "Starting web, worker, beat, the mock LLM and the edge proxy on http://127.0.0.1:8000 (Ctrl-C stops all)"
	$(VENV)/bin/honcho start web worker beat mockllm edge

# Two pytest-xdist workers, each a whole test session of its own (database test_clawfleet_gwN,
# Docker network, broker prefix, Celery worker, edge proxy); a file never splits between them, so
# the containers a module shares boot once (decision 122). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
test: venv redis postgres docker image test-image chromium check firewall caddy swarm-lab-deps
	$(TEST_ENV) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25

check: venv
	$(TEST_ENV) $(PY) manage.py check
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	@bash scripts/check-deploy.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint: check

fmt: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv redis postgres docker image caddy
	$(TEST_ENV) $(PY) bench/deploy.py
	$(TEST_ENV) $(PY) bench/sessions.py
	$(TEST_ENV) $(PY) bench/backup.py
	$(TEST_ENV) $(PY) bench/api.py
	$(TEST_ENV) $(PY) bench/edge.py
	$(TEST_ENV) $(PY) bench/reconcile.py

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@bash scripts/ensure-python.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

redis:
	@bash scripts/ensure-redis.sh

# The egress firewall of tenant containers (docs/security.md). `make test` installs only the
# dispatch chains: each test session installs the rules of its own network.
test: FIREWALL_FLAGS := --base
firewall: venv docker
	@bash scripts/ensure-firewall.sh $(FIREWALL_FLAGS)

postgres:
	@bash scripts/ensure-postgres.sh

docker:
	@bash scripts/ensure-docker.sh

image: docker
	@bash images/openclaw/build.sh $(OPENCLAW_VERSIONS)

test-image: docker
	@bash images/openclaw/build.sh --broken

chromium:
	@bash scripts/ensure-chromium.sh

# The edge proxy (docs/edge.md): Debian's caddy package.
caddy:
	@bash scripts/ensure-caddy.sh

# The three-node swarm lab (docs/swarm.md): the suite's fixture brings it up and down itself;
# this only installs the tools it needs beyond the engine (iproute2, iptables, util-linux).
swarm-lab-deps: docker
	@bash scripts/swarm-lab.sh deps

clean:
	rm -rf $(VENV) db.sqlite3 var/ staticfiles/ artifacts/
