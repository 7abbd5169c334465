# Sieve: `make demo` and `make test` each create .venv and install requirements.txt if needed,
# then Sieve itself in editable mode (pyproject.toml), which gives .venv/bin/sieve.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test stress clean-data

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m audit demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The whole suite while CPU burners keep every core busy (tests wait on states, not clocks).
# Benchmarks run one by one; each command is in docs/benchmarks.md.
stress: $(STAMP)
	bash tests/stress.sh

clean-data:
	rm -rf data/audit.duckdb data/audit.duckdb.wal data/audit.duckdb.lock data/embeddings data/thumbnails data/demo data/logs data/workers
