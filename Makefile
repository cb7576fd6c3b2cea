# PitBox: `make demo` and `make test` create .venv and install everything themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pitbox-installed
DEMO_SOURCE ?=
DATA ?= data

# Debian packages the tests use: Chromium for the dashboard's browser tests, espeak-ng for
# the offline voice. `make` installs them with apt when it runs as root, else it stops and
# prints the one command to run.
TEST_DEBS := chromium fonts-dejavu-core espeak-ng

.PHONY: demo test lint bench clean venv system-test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# $(call need_debs,PACKAGES): install the missing Debian packages, or stop with the command.
define need_debs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends$$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing" >&2; \
	    echo "run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi
endef

system-test:
	$(call need_debs,$(TEST_DEBS))

demo: $(STAMP)
	$(BIN)/python -m pitbox.demo --data $(DATA) $(if $(DEMO_SOURCE),--source $(DEMO_SOURCE))

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) system-test lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/import_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
