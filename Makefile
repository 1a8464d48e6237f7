# Tasks for people and CI. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help demo test lint fmt bench venv clean-data

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

demo: venv ## Build, start the simulator, run pipelines/mail.yaml into ./data, print a summary and a DuckDB query
	$(CARGO) build --release --bin etl
	ETL_BIN=target/release/etl PYTHON=$(PY) scripts/demo.sh

test: venv ## Install what the tests need (Python venv with duckdb), then run the whole suite
	ETL_TEST_PYTHON=$(abspath $(PY)) $(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Criterion decoder benches, then etl side by side with DuckDB and lxml+pyarrow (figures go to BENCHMARKS.md)
	$(CARGO) bench --bench decode
	$(CARGO) build --release --bin etl
	benches/compare --etl target/release/etl

venv: $(VENV)/.installed ## Project-local Python environment with the test tools (idempotent)

$(VENV)/.installed: requirements-test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

clean-data: ## Remove ./data written by the demo
	rm -rf data
