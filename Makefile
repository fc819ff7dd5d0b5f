# The one front door for developer tasks. `make help` lists the targets.
#
# Everything runs from .venv, built from the hashed lock files: requirements.lock for `make run`,
# requirements-dev.lock (a superset: tests, linters) for the rest. A stamp file per lock file
# re-installs when the lock file or pyproject.toml changes, and not otherwise.

PYTHON ?= python3
UV ?= uv
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

# Quiet pip's "new version available" notice; CI has no stdin and needs no prompts.
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Exactly these commands wrote the lock files (they are recorded in each file's header, too).
# requirements-build.in adds setuptools and wheel, so the editable install needs no unhashed download.
LOCK_RUN := $(UV) pip compile pyproject.toml requirements-build.in --python-version 3.11 --generate-hashes -o requirements.lock
LOCK_DEV := $(UV) pip compile pyproject.toml requirements-build.in --extra test --python-version 3.11 --generate-hashes -o requirements-dev.lock

.DEFAULT_GOAL := help
.PHONY: help run test lint bench docs lock clean

help:
	@echo "make run    install (if needed) and run otel-judge; options via ARGS='--config FILE'"
	@echo "make test   install the dev environment (if needed) and run the test suite"
	@echo "make lint   ruff check, ruff format --check, mypy on otel_judge"
	@echo "make bench  run the benchmarks (bench/run.py; options via ARGS=...)"
	@echo "make docs   regenerate docs/configuration.md from otel_judge/config.py"
	@echo "make lock   regenerate requirements.lock and requirements-dev.lock with uv"
	@echo "make clean  remove .venv and caches"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "otel-judge needs Python >= 3.11; found " + sys.version.split()[0] + " (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

# --no-deps: every dependency comes from the lock file, with its hash.
# --no-build-isolation: build with the setuptools/wheel from the lock file, not a fresh download.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock --no-deps
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.installed-dev: requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock --no-deps
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

run: $(VENV)/.installed
	exec $(BIN)/otel-judge serve $(ARGS)

# pytest exits 5 when it collected no test: that fails `make test` like any other non-zero status.
test: $(VENV)/.installed-dev
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS) || { rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc; }

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy otel_judge

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py $(ARGS)

docs: $(VENV)/.installed-dev
	$(BIN)/python docs/gen_config_reference.py

lock:
	$(LOCK_RUN)
	$(LOCK_DEV)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
