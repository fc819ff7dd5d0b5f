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
.PHONY: help run test lint bench docs proto lock clean phoenix demo

help:
	@echo "make run    install (if needed) and run otel-judge; options via ARGS='--config FILE'"
	@echo "make test   install the dev environment (if needed) and run the test suite"
	@echo "make lint   ruff check, ruff format --check, mypy on otel_judge"
	@echo "make bench  run the benchmarks (bench/run.py; options via ARGS=...)"
	@echo "make docs   regenerate docs/configuration.md from otel_judge/config.py"
	@echo "make proto  regenerate otel_judge/quality/v1/ from proto/ (grpcio-tools; the output is committed)"
	@echo "make lock   regenerate requirements.lock and requirements-dev.lock with uv"
	@echo "make demo   run an example end to end with a fake LLM and judge (EXAMPLE=openai_v2|openllmetry|openinference|litellm_gateway|router)"
	@echo "make phoenix  build .venv-phoenix (Arize Phoenix, the trace backend of tests/test_phoenix.py)"
	@echo "make clean  remove .venv, .venv-phoenix and caches"

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

# Arize Phoenix, a real OTLP trace backend for tests/test_phoenix.py, in a venv of its own: its
# dependency tree is large and must not mix with .venv. Built once from its hashed lock file (the
# stamp re-installs only when the lock changes); tests/test_phoenix.py also runs this target itself.
PHOENIX_VENV := .venv-phoenix
PHOENIX_LOCK := tests/phoenix/requirements-phoenix.lock
LOCK_PHOENIX := $(UV) pip compile tests/phoenix/requirements-phoenix.in --python-version 3.11 --generate-hashes -o tests/phoenix/requirements-phoenix.lock

$(PHOENIX_VENV)/.installed: $(PHOENIX_LOCK)
	@rm -rf $(PHOENIX_VENV)
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(PHOENIX_LOCK)
	@touch $@

phoenix: $(PHOENIX_VENV)/.installed

# pytest exits 5 when it collected no test: that fails `make test` like any other non-zero status.
test: $(VENV)/.installed-dev $(PHOENIX_VENV)/.installed
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS) || { rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc; }

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy otel_judge

# examples/run.py: fake LLM, fake judge, otel-judge in-process and the example app; no API key needed.
demo: $(VENV)/.installed-dev
	$(BIN)/python examples/run.py $(or $(EXAMPLE),openai_v2)

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py $(ARGS)

docs: $(VENV)/.installed-dev
	$(BIN)/python docs/gen_config_reference.py

# The quality API's gRPC stubs; tests/test_quality_api.py fails when the committed ones are not current.
PROTO_FILES := proto/otel_judge/quality/v1/quality.proto
proto: $(VENV)/.installed-dev
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTO_FILES)

lock:
	$(LOCK_RUN)
	$(LOCK_DEV)
	$(LOCK_PHOENIX)

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
