# Two commands on a fresh machine (only Python 3.11 needed):
#   make book   -> creates .venv, installs requirements.txt, builds the book into _build/html
#   make test   -> creates .venv, installs requirements.txt, runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install test test-lib test-book test-browser book vendor bench clean

all: test

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

# Library tests (fast) then the notebooks under nbval.
test: $(STAMP)
	$(BIN)/python -m pytest tests -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

# Offline JS assets (MathJax, require.js, ipywidgets HTML manager: `npm pack`, pinned in
# book/_ext/offline_assets.py; plotly.min.js copied from the installed plotly). Idempotent:
# no network when everything is present.
vendor: $(STAMP)
	$(BIN)/python book/_ext/offline_assets.py

# -W only bites on a fresh build, hence the rm.
book: vendor
	rm -rf _build
	$(BIN)/jupyter-book build . -W --keep-going

# Execute every chapter notebook under nbval (compares only cells marked NBVAL_CHECK_OUTPUT).
test-book: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env book/ -q

# Open the built pages in headless Chromium with no network (needs `make book` and chromium).
test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -q

clean:
	rm -rf _build .pytest_cache .jupyter_cache
