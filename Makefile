# One virtualenv (.venv) for every target, filled group by group from hash-pinned locks
# (requirements/README.md): each target installs the groups it needs, once; `make run` gets
# only the bridge's own dependencies and the local broker.
# Needs only python3 (>= 3.11) on the machine; `make test` also needs npm.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# A group is installed once: its stamp is .venv/.stamp-GROUP, newer than requirements/GROUP.lock.
stamp   = $(VENV)/.stamp-$(1)

# Node tools for tests/deploy (the AsyncAPI CLI, prometheus-operator schemas), pinned by
# tools/node/package-lock.json and installed there with `npm ci`, never globally.
NODE_TOOLS := tools/node
NODE_STAMP := $(NODE_TOOLS)/node_modules/.installed-stamp

# Python code checked by ruff: the package, tests, developer tools and the examples.
LINT_PATHS := bridge tests devtools examples bench

# The folders of the suite that start no broker, Node tool or Prometheus.
FAST_TESTS := tests/unit tests/http tests/altinn

# `make locks`: the groups locked from pyproject.toml's extras, in this order; each is compiled
# with the runtime lock and every lock before it as constraints, so all locks agree on the
# versions they share. UPGRADE passes options to every compile (requirements/README.md).
GROUPS  := broker test deploy lint bench
UPGRADE ?=
COMPILE  = $(BIN)/uv pip compile --quiet --generate-hashes --annotation-style line \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make locks' $(UPGRADE)

.PHONY: help install tools run test test-fast conformance lint format locks bench clean

help:
	@echo "make run        - local broker + bridge on http://127.0.0.1:8080 (Ctrl-C stops both)"
	@echo "make test       - the whole test suite (starts its own brokers; needs npm for the Node tools)"
	@echo "make test-fast  - tests/unit, tests/http and tests/altinn: no broker, Node or Prometheus"
	@echo "make conformance - the bridge's behaviours on YOUR Kafka (KAFKA_BOOTSTRAP_SERVERS, KAFKA_*; docs/operations.md)"
	@echo "make lint       - ruff, ruff format --check, mypy --strict, import-linter"
	@echo "make format     - ruff format and ruff check --fix"
	@echo "make bench      - the performance benchmark (docs/performance.md; BENCH_QUICK=1 for a short one)"
	@echo "make bench-instructions - instructions per event under callgrind, against bench/instructions-budget.json"
	@echo "make locks      - regenerate every requirements/*.lock (UPGRADE='-P NAME' bumps one package)"
	@echo "make install    - every Python group into .venv (what run, test, lint and bench install)"
	@echo "make tools      - the Node tools the deploy tests use (npm ci in tools/node)"
	@echo "make clean      - remove the virtualenv and caches"

# The virtualenv itself, with the build backend (so `pip install -e .` needs no build isolation).
$(call stamp,venv): requirements/build.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes --no-deps -r requirements/build.lock
	touch $@

# The bridge's own dependencies, and the bridge itself in editable mode.
$(call stamp,runtime): $(call stamp,venv) requirements/runtime.lock pyproject.toml
	$(PIP) --require-hashes --no-deps -r requirements/runtime.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

# Any other group: broker, test, deploy, lint, bench, lock-tool.
$(call stamp,%): requirements/%.lock $(call stamp,venv)
	$(PIP) --require-hashes --no-deps -r $<
	touch $@

install: $(foreach group,runtime $(GROUPS),$(call stamp,$(group)))

$(NODE_STAMP): $(NODE_TOOLS)/package.json $(NODE_TOOLS)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20 and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	cd $(NODE_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

tools: $(NODE_STAMP)

run: $(call stamp,runtime) $(call stamp,broker)
	$(BIN)/python -m devtools.run_local

test: $(call stamp,runtime) $(call stamp,broker) $(call stamp,test) $(call stamp,deploy) $(NODE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory bench-instructions

# Instructions per event on the event route under valgrind's callgrind, checked against
# bench/instructions-budget.json (docs/performance.md). BUDGET=write stores new counts (+10 %).
# Installs Debian's valgrind when it is missing and this runs as root.
bench-instructions: $(call stamp,runtime)
	@command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null; } || \
		{ echo "valgrind not found: apt-get install valgrind (Debian)"; exit 1; }
	$(BIN)/python -m bench.instructions $(if $(filter write,$(BUDGET)),--write-budget,--check)

test-fast: $(call stamp,runtime) $(call stamp,test)
	$(BIN)/python -m pytest $(FAST_TESTS) $(PYTEST_ARGS)

# Against the cluster in KAFKA_BOOTSTRAP_SERVERS and the KAFKA_* security variables, in topics of its
# own (docs/operations.md, "Before go-live"). `make test` runs it against Tansu
# (tests/integration/test_conformance.py).
conformance: $(call stamp,runtime) $(call stamp,broker)
	$(BIN)/python -m devtools.conformance

lint: $(call stamp,runtime) $(call stamp,lint)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(call stamp,lint)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

# Needs PyPI. Each lock keeps its current pins unless pyproject.toml, a .in file or UPGRADE
# asks for another; a lock that exists is the compile's starting point.
locks: $(call stamp,lock-tool)
	$(COMPILE) requirements/build.in -o requirements/build.lock
	$(COMPILE) requirements/lock-tool.in -o requirements/lock-tool.lock
	$(COMPILE) pyproject.toml -o requirements/runtime.lock
	@set -e; constraints="-c requirements/runtime.lock"; \
	for group in $(GROUPS); do \
		(set -x; $(COMPILE) pyproject.toml --extra $$group $$constraints -o requirements/$$group.lock); \
		constraints="$$constraints -c requirements/$$group.lock"; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info $(NODE_TOOLS)/node_modules

# The performance benchmark (docs/performance.md): about 15 minutes, BENCH_QUICK=1 for a few.
# Not part of `make test`. Installs wrk from Debian when it is missing.
bench: $(call stamp,runtime) $(call stamp,broker) $(call stamp,bench)
	$(BIN)/python -m bench
