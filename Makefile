# Everything installs from scratch into .venv; `make test` is what CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo bench clean k8s-tools test-servers test-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check ray_queue autoscaler tests benchmarks
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# kube-apiserver, etcd, helm and the KubeRay operator, built from their published Go
# modules into ~/.cache/ray-queue-k8s (only what is missing; see docs/testing.md).
k8s-tools: $(STAMP)
	$(PY) -m tests.k8s.toolchain

# Debian's Prometheus and Redis servers, for the dashboard and head-restart tests.
test-servers:
	bash scripts/install-test-servers.sh

test-deps: k8s-tools test-servers

test: lint typecheck test-deps
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/engine

# Benchmarks are commands, not tests: they print what they measured and how to rerun it.
bench: $(STAMP)
	$(PY) -m benchmarks.engine --scenario kueue-baseline --out benchmarks/results/engine-kueue-baseline.json
	$(PY) -m benchmarks.engine --scenario kueue-large --out benchmarks/results/engine-kueue-large.json
	$(PY) -m benchmarks.ray_e2e --scenario kueue-baseline --out benchmarks/results/ray-e2e-kueue-baseline.json
	$(PY) -m benchmarks.overhead --out benchmarks/results/overhead.json
	$(PY) -m benchmarks.grpc_load --backend manager --out benchmarks/results/grpc-manager.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# A local Ray cluster with simulated A100/T4 nodes, three teams, a live table (~1-2 min).
# Then the local autoscaler: a GPU node added for a queued gang, removed once idle.
demo: $(STAMP)
	$(PY) -m ray_queue.demo
	$(PY) -m autoscaler.demo
