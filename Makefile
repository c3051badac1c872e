# Two commands on a fresh machine: `make run` (the sandbox) and `make test` (everything).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` needs only what the service needs: its own small venv with the runtime dependencies
# exactly as the container image installs them (requirements.lock, hash-checked), no test tools,
# browser driver or Kubernetes validators; then the project itself, built by the locked setuptools
# (requirements-build.lock) and installed without dependencies, as the image does, which leaves the
# command .venv-run/bin/sso-proxy. It is reinstalled when a source file changes.
RUN_VENV ?= .venv-run
RUN_STAMP := $(RUN_VENV)/.installed
RUN_CMD := $(RUN_VENV)/bin/sso-proxy
LOCKED := install -q --require-hashes --no-deps -r requirements.lock -r requirements-build.lock
SOURCES := $(shell find proxy -name '*.py') pyproject.toml README.md LICENSE
# The sandbox's ports: make run PORT=8000 ADMIN_PORT=9000 (AUTH0_PORT, WORKOS_PORT, WORKOS_API_PORT for
# the stand-ins).
PORT ?= 8080
ADMIN_PORT ?= 9090
AUTH0_PORT ?= 8081
WORKOS_PORT ?= 8082
WORKOS_API_PORT ?= 8083

.PHONY: run test install system-deps lint typecheck unit e2e bench hostile fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,e2e]'
	touch $(STAMP)

# With a pip beside $(PYTHON) (>= 22.3, for --python) the venv gets no pip of its own: seeding one
# costs more than installing the service's dependencies.
$(RUN_STAMP): requirements.lock requirements-build.lock
	rm -rf $(RUN_VENV)
	$(PYTHON) -m venv --without-pip $(RUN_VENV)
	if $(PYTHON) -m pip --python $(RUN_VENV)/bin/python --version >/dev/null 2>&1; then \
	  $(PYTHON) -m pip --python $(RUN_VENV)/bin/python $(LOCKED); \
	else \
	  $(RUN_VENV)/bin/python -m ensurepip -q && $(RUN_VENV)/bin/python -m pip $(LOCKED); \
	fi
	touch $(RUN_STAMP)

# Not editable: the command runs the code as installed, the same whatever the working directory.
$(RUN_CMD): $(RUN_STAMP) $(SOURCES)
	if [ -x $(RUN_VENV)/bin/pip ]; then pip="$(RUN_VENV)/bin/python -m pip"; \
	else pip="$(PYTHON) -m pip --python $(RUN_VENV)/bin/python"; fi; \
	$$pip install -q --no-deps --no-build-isolation --force-reinstall .
	rm -rf build
	touch $(RUN_CMD)

install: $(STAMP)

# Debian packages the tests use (chromium, xmlsec1, nginx, wrk, promtool and the prometheus server); installs only what is missing.
system-deps:
	scripts/system-deps.sh

# hooli-ping is cut over in routes.yaml but left out of the WorkOS stand-in: it shows the fallback path.
# The sandbox serves a copy of routes.yaml in .sandbox/ (kept across runs; delete it to start over), so
# the tour's `routes set` edits that copy, never the checked-in example.
run: $(RUN_CMD)
	@echo "sso-proxy $$($(RUN_CMD) --version | cut -d' ' -f2) is in $(RUN_VENV)/bin; to run the commands below:"
	@echo "  export PATH=\"$$PWD/$(RUN_VENV)/bin:\$$PATH\""
	mkdir -p .sandbox && [ -f .sandbox/routes.yaml ] || cp routes.yaml .sandbox/routes.yaml
	$(RUN_CMD) sandbox --routes .sandbox/routes.yaml --migrated acme-okta,initech-entra --via-make \
		--port $(PORT) --admin-port $(ADMIN_PORT) --auth0-port $(AUTH0_PORT) --workos-port $(WORKOS_PORT) \
		--workos-api-port $(WORKOS_API_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q --ignore=tests/e2e

e2e: $(STAMP) system-deps
	$(BIN)/pytest -q tests/e2e

# Everything CI runs: lint, types, the whole test suite (unit, integration, end-to-end) with a
# branch-coverage gate.
test: $(STAMP) system-deps lint typecheck
	rm -f .coverage .coverage.*
	$(BIN)/pytest --cov=proxy --cov-branch --cov-report=term --cov-fail-under=85

# Coverage-guided fuzzing of identification (atheris); new crashes land in fuzz/crashes/, which the
# test suite replays (tests/test_fuzz_regressions.py). FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/pip install -q 'atheris>=2.3'
	mkdir -p fuzz/work
	$(BIN)/python fuzz/fuzz_callback.py fuzz/work fuzz/corpus -max_total_time=$(FUZZ_SECONDS) \
		-rss_limit_mb=2048 -artifact_prefix=fuzz/crashes/

bench: $(STAMP) system-deps
	$(BIN)/python bench/run.py

# Hostile traffic against the real service on loopback (bench/hostile.py): about a minute; prints a
# table of attacks, answers, peak RSS and the worst /healthz stall; exits non-zero if anything reached
# Auth0 or another host where nothing may.
hostile: $(STAMP)
	$(BIN)/python bench/hostile.py

clean:
	rm -rf $(VENV) $(RUN_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
