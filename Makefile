# Herald: `make run` (everything, on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run production test test-fast schema-check screenshots lint format bench clean setup

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)

## run: set up and start web + worker + beat + provider simulators
run: $(STAMP)
	$(PY) manage.py run_stack

## production: a production node from the environment (docs/deploy.md)
production: $(STAMP)
	$(PY) manage.py run_stack --production $(PRODUCTION_ARGS)

## test: set up and run the whole suite (unit + e2e)
test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider --durations=25

## test-fast: everything but the end-to-end suite
test-fast: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m "not e2e"

## schema-check: schemathesis against a live server on a fresh database (docs/decisions.md)
schema-check: $(STAMP)
	$(PY) .ci/schemathesis.py $(SCHEMA_CHECK_ARGS)

## screenshots: retake the README's console screenshots (docs/console-*.png) with the browser flow
screenshots: $(STAMP)
	HERALD_DOCS_SCREENSHOTS=1 HERALD_REQUIRE_BROWSER=1 $(PY) -m pytest -p no:cacheprovider -q tests/e2e/test_console_flow.py tests/campaigns/test_console_engagement.py

## lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/fanout.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
