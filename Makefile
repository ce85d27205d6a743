# paygate: `make run` starts it with demo data, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := src/paygate/web/static/vendor
HTMX := $(VENDOR)/htmx.min.js
# The monitoring dashboard's charts (issue 12); axe-core (a dev dependency) stays in
# node_modules, where the browser tests read it.
CHARTJS := $(VENDOR)/chart.umd.min.js

.PHONY: setup run test lint typecheck pytest browser clean

setup: $(VENV)/.installed $(HTMX) $(CHARTJS)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

$(HTMX): node_modules/.installed
	mkdir -p $(dir $@)
	cp node_modules/htmx.org/dist/htmx.min.js $@

$(CHARTJS): node_modules/.installed
	mkdir -p $(dir $@)
	cp node_modules/chart.js/dist/chart.umd.min.js $@

# Debian's chromium drives the browser tests (Playwright's own download does not work offline).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: setup
	$(BIN)/paygate serve --demo

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: setup
	$(BIN)/mypy

pytest: setup browser
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

clean:
	rm -rf $(VENV) node_modules $(HTMX) $(CHARTJS) var
