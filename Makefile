# One virtualenv (.venv) built from the hash-pinned lock; every target uses it.
# Needs only python3 (>= 3.11) on the machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Node tools for tests/deploy (the AsyncAPI CLI, prometheus-operator schemas), pinned by
# tools/node/package-lock.json and installed there with `npm ci`, never globally.
NODE_TOOLS := tools/node
NODE_STAMP := $(NODE_TOOLS)/node_modules/.installed-stamp

# Python code checked by ruff: the package, tests, developer tools and the examples.
LINT_PATHS := bridge tests devtools examples bench

.PHONY: help install tools run test test-fast lint format clean bench

help:
	@echo "make run    - local broker + bridge on http://127.0.0.1:8080 (Ctrl-C stops both)"
	@echo "make test   - the whole test suite (starts its own brokers)"
	@echo "make lint   - ruff + mypy --strict"
	@echo "make tools  - the Node tools the deploy tests use (npm ci in tools/node)"
	@echo "make clean  - remove the virtualenv and caches"

$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

$(NODE_STAMP): $(NODE_TOOLS)/package.json $(NODE_TOOLS)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20 and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	cd $(NODE_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

tools: $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run_local

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info $(NODE_TOOLS)/node_modules

# The performance benchmark (docs/performance.md): about 15 minutes, BENCH_QUICK=1 for a few.
# Not part of `make test`. Installs wrk from Debian when it is missing.
bench: $(STAMP)
	$(BIN)/python -m bench
