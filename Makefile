# Two commands on a fresh machine (only Python 3.11 needed):
#   make book   -> creates .venv, installs requirements.txt, builds the book into _build/html
#   make test   -> creates .venv, installs requirements.txt, runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install test test-book test-browser chromium book vendor bench reproduce lint clean

all: test

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

# The whole suite: library/engine/UI tests, then the book built from clean (every chapter
# executed, raise_on_error: a failing cell or hidden check fails the build), then the browser
# tests: the built pages in headless Chromium (no network) and the chapters in a live
# JupyterLab (tests/browser/test_jupyterlab.py, 3 min at most; it runs after the build so the
# engine's numba cache is warm). nbval is not run here: the notebooks carry no stored outputs,
# so `--nbval-lax` would only execute every chapter a second time, which the clean build
# already does with raise_on_error. `make test-book` runs the chapters under nbval alone
# (quicker when editing a single chapter).
test: $(STAMP) chromium lint
	$(BIN)/python -m pytest tests -q --ignore=tests/browser
	$(MAKE) book
	$(BIN)/python -m pytest tests/browser -q

# Debian's Chromium for the browser tests: installed when we are root with apt-get.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is needed for the browser tests: install it (Debian/Ubuntu: sudo apt-get install chromium) and run make test again." >&2; exit 1; \
	fi

# The paper's schedules at full length (three capped: sharpness_lib/reproduce.py says why),
# stored under results/ with their provenance; about 3 hours on 2 cores. Resumable: a restart
# skips finished runs. Options: PRESET="fig4b fig1a", STUDY="paper figure4 phase", JOBS=2,
# SCHEDULER=tcp://host:8786 (a Dask cluster instead of local processes).
reproduce: $(STAMP)
	$(BIN)/python -m sharpness_lib reproduce $(if $(STUDY),--study $(STUDY)) \
		$(if $(PRESET),--preset $(PRESET)) --jobs $(or $(JOBS),2) \
		$(if $(SCHEDULER),--scheduler $(SCHEDULER))

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

# ruff (rules and line length in pyproject.toml): lint, then check the formatting.
LINT_PATHS := sharpness_lib tests benchmarks book/*.ipynb
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

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
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env book/*.ipynb -q -p no:cacheprovider

# Open the built pages in headless Chromium with no network (needs `make book` and chromium).
test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -q

clean:
	rm -rf _build .pytest_cache .jupyter_cache
