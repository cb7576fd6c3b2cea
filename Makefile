# PitBox: `make demo` and `make test` create .venv and install everything themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pitbox-installed
DEMO_SOURCE ?=
DATA ?= data

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pitbox.demo --data $(DATA) $(if $(DEMO_SOURCE),--source $(DEMO_SOURCE))

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/import_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
