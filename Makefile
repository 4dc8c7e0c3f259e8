# slotstream developer commands. `make test` and `make serve` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help test lint typecheck unit serve demo proto clean
.DEFAULT_GOAL := help

# Python 3.11 or later, checked before the environment is made (an older one fails later with a dependency conflict).
NEED_PYTHON := import sys; sys.exit(sys.version_info < (3, 11))

help:
	@echo "make test       lint, type-check and run the tests (creates .venv with every extra but gpu)"
	@echo "make serve      serve the embedded default model on 127.0.0.1:50051 until Ctrl-C (ARGS=\"--max-streams 8\")"
	@echo "make demo       serve in the background, stream a generated clip, write runs/demo/overlay.gif"
	@echo "make lint       ruff check and format check"
	@echo "make typecheck  mypy on every package"
	@echo "make unit       the tests alone"
	@echo "make proto      regenerate the gRPC stubs in service/_pb/ after editing proto/"
	@echo "make clean      remove .venv and the tool caches (then make PYTHON=python3.11 ... for another Python)"

$(BIN)/python:
	@$(PYTHON) -c '$(NEED_PYTHON)' || { echo "slotstream needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) --version 2>&1): run make PYTHON=python3.11 (or newer)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Every extra but `gpu` (the client core, serving, training, export, ONNX Runtime's CPU build, the tools). The runtime
# packages install at the versions of deploy/constraints.txt, the ones the CPU image ships, so the tests run what is
# deployed (tests/deploy/test_freeze_constraints.py checks the two agree).
$(STAMP): pyproject.toml deploy/constraints.txt | $(BIN)/python
	@$(BIN)/python -c '$(NEED_PYTHON)' || { echo "$(VENV) was made with $$($(BIN)/python --version 2>&1); slotstream needs Python >= 3.11: run make clean, then make PYTHON=python3.11 (or newer)" >&2; exit 1; }
	$(BIN)/pip install --quiet --constraint deploy/constraints.txt -e '.[server,train,export,onnx,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check plugins training service downstream tests
	$(BIN)/ruff format --check plugins training service downstream tests

typecheck: $(STAMP)
	$(BIN)/mypy plugins training service downstream

unit: $(STAMP)
	SLOTSTREAM_REQUIRE_EXTRAS=onnx $(BIN)/python -m pytest -q

test: lint typecheck unit

# Serve the embedded default model on 127.0.0.1:50051 until Ctrl-C (more flags: make serve ARGS="--max-streams 8").
serve: $(STAMP)
	$(BIN)/python -m service --log-format text $(ARGS)

# Serve in the background, stream a generated clip, write runs/demo/overlay.gif, stop the server.
demo: $(STAMP)
	$(BIN)/python -m service.demo --out-dir runs/demo

# Regenerate the gRPC stubs in service/_pb/ after editing proto/ (tests fail while they are stale).
proto: $(STAMP)
	$(BIN)/python -m service.protogen

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache slotstream.egg-info
