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
# Debian packages `make test-deploy` uses: podman (with runc, since crun fails here) and
# debootstrap for the base image (there is no container registry to pull from).
DEPLOY_DEBS := podman runc debootstrap
# Under CI the container tests fail instead of skipping when podman cannot run.
PITBOX_REQUIRE_DEPLOY ?= $(if $(CI),1,0)

.PHONY: demo test test-deploy deploy-debs test-stress lint bench clean venv system-test

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

deploy-debs:
	$(call need_debs,$(DEPLOY_DEBS))

# The relay image built (debootstrap base, podman build) and run with podman: tests/deploy.
# The base image and layers are cached in ~/.cache/pitbox-deploy (PITBOX_DEPLOY_CACHE).
test-deploy: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory deploy-debs; \
	else echo "not root: podman cannot be installed or run here; the container tests will skip"; fi
	PITBOX_DEPLOY=1 PITBOX_REQUIRE_DEPLOY=$(PITBOX_REQUIRE_DEPLOY) $(BIN)/python -m pytest tests/deploy -m deploy

# The suite three times in a row while two CPU-bound processes run beside it (a busy machine);
# fails at the first run that fails. The two processes are stopped afterwards, also on failure
# or Ctrl-C.
STRESS_RUNS ?= 3
test-stress: $(STAMP) system-test lint
	@hogs=""; \
	trap 'kill $$hogs 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	for i in 1 2; do $(BIN)/python -c "while True: pass" & hogs="$$hogs $$!"; done; \
	echo "test-stress: $(STRESS_RUNS) runs of the suite beside two CPU-bound processes (pids$$hogs)"; \
	for run in $$(seq $(STRESS_RUNS)); do \
	  start=$$(date +%s); \
	  if $(BIN)/python -m pytest -q $(PYTEST_ARGS); then result=passed; else result=FAILED; fi; \
	  echo "test-stress: run $$run of $(STRESS_RUNS) $$result in $$(( $$(date +%s) - start )) s (load: $$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"; \
	  [ "$$result" = passed ] || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python bench/import_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
