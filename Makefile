# slotstream developer commands. `make test` and `make serve` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit serve demo proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every extra but `gpu` (the client core, serving, training, export, ONNX Runtime's CPU build, the tools). The runtime
# packages install at the versions of deploy/constraints.txt, the ones the CPU image ships, so the tests run what is
# deployed (tests/deploy/test_freeze_constraints.py checks the two agree).
$(STAMP): pyproject.toml deploy/constraints.txt | $(BIN)/python
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
