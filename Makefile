# Leadflow: `make demo` runs the pipeline on the bundled sample; `make test` runs every test.
# Each target creates .venv at the repository root from requirements.lock when it is missing or stale.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export BENTOML_DO_NOT_TRACK := true
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test test-fast lint bench lock clean

install: $(STAMP)

$(STAMP): requirements.lock setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m pipelines.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not e2e and not fuzz"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

# Bounded throughput and memory beside the plain-loop reference, streaming latency on the local stack,
# and the scorer over HTTP beside the in-process model.
bench: $(STAMP)
	$(BIN)/python -m pipelines.bench
	$(BIN)/python -m pipelines.stream_bench
	$(BIN)/python -m scoring.bench

# Re-resolve every dependency together (one resolver run) after editing requirements.in.
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q uv==$(UV_VERSION); }
	$(BIN)/uv pip compile -q requirements.in -o requirements.lock --python-version 3.11 --custom-compile-command "make lock"

clean:
	rm -rf $(VENV) out .bench .pytest_cache .ruff_cache .hypothesis
