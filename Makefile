# Everything installs from scratch into .venv, from the hashed lock in requirements/;
# `make test` is what CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_LOCK := requirements/runtime.txt
DEV_LOCK := requirements/dev.txt
RUNTIME_STAMP := $(VENV)/.runtime-installed
STAMP := $(VENV)/.dev-installed
# pip-tools writes the lock; pinned so that `make lock` itself does not drift.
PIP_TOOLS := pip-tools==7.7.0
PIP_COMPILE := $(VENV)-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --all-build-deps --no-emit-find-links --no-emit-index-url

.PHONY: install test lint typecheck unit demo bench clean k8s-tools test-servers test-deps lock

# The lock is resolved for CPython 3.11 on Linux (what CI and the image run).
$(PY):
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else \
		f"the lock in requirements/ is for Python 3.11, not {v[0]}.{v[1]}: run make with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)

# What the demo and a deployment need: the runtime lock, then ray-queue itself (no deps:
# they all came from the lock; no build isolation: setuptools came from it too).
$(RUNTIME_STAMP): $(RUNTIME_LOCK) pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(RUNTIME_LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Development and CI: the runtime lock plus the test tools.
$(STAMP): $(DEV_LOCK) pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve the lock on purpose (newest versions within pyproject.toml's ranges), then
# regenerate the gRPC code with the locked grpcio-tools. Commit all of it together.
lock:
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet $(PIP_TOOLS)
	$(PIP_COMPILE) --upgrade --output-file $(RUNTIME_LOCK) pyproject.toml
	$(PIP_COMPILE) --upgrade --extra test --output-file $(DEV_LOCK) pyproject.toml
	rm -f $(STAMP)
	$(MAKE) $(STAMP)
	$(PY) -m ray_queue.grpc.codegen

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
	rm -rf $(VENV) $(VENV)-lock .pytest_cache .mypy_cache .ruff_cache

# A local Ray cluster with simulated A100/T4 nodes, three teams, a live table (~1-2 min).
# Then the local autoscaler: a GPU node added for a queued gang, removed once idle.
demo: $(RUNTIME_STAMP)
	$(PY) -m ray_queue.demo
	$(PY) -m autoscaler.demo
