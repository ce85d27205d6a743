# paygate: `make run` starts it with demo data, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Browser libraries from npm (package-lock.json), copied where paygate serves them; the
# browser tests read axe-core from node_modules.
VENDOR := src/paygate/web/static/vendor
ASSETS := $(VENDOR)/.installed

.PHONY: setup run test lint typecheck pytest browser clean

setup: $(VENV)/.installed $(ASSETS)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p $(VENDOR)/swagger-ui
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp node_modules/chart.js/dist/chart.umd.min.js $(VENDOR)/
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/swagger-ui/
	touch $@

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
	rm -rf $(VENV) node_modules $(VENDOR) var
