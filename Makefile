# Two commands: `make run` (the whole system) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
SERVICES := services.gateway services.imaging services.storage services.webhooks
PYTEST_ARGS ?=
# SCALE=auto: `make run` leaves imaging to the scaler (see "Scaling" in README.md)
SCALE ?=

.PHONY: run scale test test-unit test-integration chaos bench venv broker clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

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
test: venv
	PY=$(BIN)/python scripts/ensure-broker.sh --management
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	$(BIN)/nameko test tests $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/nameko test tests/unit $(PYTEST_ARGS)

test-integration: venv
	PY=$(BIN)/python scripts/ensure-broker.sh --management
	scripts/ensure-postgres.sh
	$(BIN)/nameko test tests/integration $(PYTEST_ARGS)

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
