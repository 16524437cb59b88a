# Every target makes and uses the project's virtual environment itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test soak fuzz bench lint up down services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

services:
	@bash .ci/services

demo: $(STAMP) services
	$(BIN)/dialer demo

# Two pytest processes, each with its own database and Redis prefix (tests/conftest.py), each taking whole
# modules (a module's stack, simulator and fixtures stay in one process). Most of the suite waits on real
# processes and real seconds, so two share the 2 cores well. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP) services
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# Long fault scenarios (docs/RELIABILITY.md), each bounded by SOAK_SECONDS (default 600) and sized by
# SOAK_DESTINATIONS (default 20000); figures are appended to bench/out/fault-figures.jsonl. Then the
# adversarial suites at soak size (`make fuzz` alone: docs/SECURITY.md).
SOAK_SECONDS ?= 600
SOAK_DESTINATIONS ?= 20000
soak: $(STAMP) services
	mkdir -p bench/out
	DIALER_SOAK=1 SOAK_SECONDS=$(SOAK_SECONDS) SOAK_DESTINATIONS=$(SOAK_DESTINATIONS) \
		DIALER_FAULT_FIGURES=$(CURDIR)/bench/out/fault-figures.jsonl $(BIN)/pytest -q -s -m soak tests
	$(MAKE) fuzz

# The adversarial suites at soak size (thousands of cases each; minutes). `make test` runs them at ci size.
FUZZ_TESTS := tests/test_fuzz_callbacks.py tests/test_fuzz_loader.py tests/test_api_fuzz.py
fuzz: $(STAMP) services
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest -q -p no:cacheprovider $(FUZZ_TESTS)

bench: $(STAMP) services
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check campaigns workers simulator bench tests
	$(BIN)/mypy

up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/data bench/out
