# One virtualenv (.venv) built from the hash-pinned lock; every target uses it.
# Needs only python3 (>= 3.11) on the machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install run test test-fast lint format clean

help:
	@echo "make run    - local broker + bridge on http://127.0.0.1:8080 (Ctrl-C stops both)"
	@echo "make test   - the whole test suite (starts its own brokers)"
	@echo "make lint   - ruff + mypy --strict"
	@echo "make clean  - remove the virtualenv and caches"

$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run_local

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bridge tests devtools
	$(BIN)/ruff format --check bridge tests devtools
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format bridge tests devtools
	$(BIN)/ruff check --fix bridge tests devtools

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
