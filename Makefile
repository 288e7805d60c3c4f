# Every target bootstraps what it needs: a fresh machine with Python 3.11 and make is enough.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.stamp-$(PY_HASH)
# Portable llama.cpp build (the wheel compiles from source).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv demo lint test test-slow test-cluster test-all bench clean nemo-platform image-tools

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[local,nemo,prod,dev]"
	@rm -f $(VENV)/.stamp-*; touch $@

venv: $(STAMP) ## create/update the virtualenv (idempotent; fast when up to date)

demo: venv ## run the whole flywheel on the embedded stack (Temporal dev server, llama.cpp, SQLite)
	$(BIN)/flywheel demo $(DEMO_ARGS)

lint: venv ## ruff: the rules in pyproject.toml [tool.ruff]
	$(BIN)/ruff check .

test: venv ## default test suite (unit, workflow on a real Temporal dev server, API)
	$(PYTEST) -m "not slow and not nemo_platform and not bench and not cluster" $(PYTEST_ARGS)

# Assembled models (and the trainer's dequantised weights) are shared by the slow test modules.
export FLYWHEEL_TEST_MODEL_CACHE ?= $(CURDIR)/.flywheel-test-models

test-slow: venv nemo-platform image-tools ## slow lanes CI also runs: real model, real training, crash tests, NeMo Platform
	$(PYTEST) -m "(slow or nemo_platform) and not bench and not cluster" $(PYTEST_ARGS)

test-cluster: venv ## several hosts in network namespaces (root + iproute2); says why when it cannot run
	$(PYTEST) -m cluster $(PYTEST_ARGS)

test-all: test test-slow test-cluster ## every lane

bench: venv ## benchmarks (ratios printed side by side)
	$(BIN)/python -m bench $(BENCH_ARGS)

nemo-platform: ## separate Python 3.12+/3.13 venv for the real NeMo Platform services (skipped when no such Python)
	@bash scripts/nemo_platform_venv.sh || echo "nemo-platform venv not prepared (see message above); nemo_platform tests will say so"

image-tools: ## buildah + debootstrap for the slow image test (apt-get; skipped with a message when not root)
	@bash scripts/install_image_tools.sh || echo "image tools not installed (see message above); the image test will say so"

clean: ## remove caches and demo output (keeps the venv)
	rm -rf demo-output .pytest_cache .flywheel
