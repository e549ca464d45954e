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

# The whole suite: library/engine/UI tests; every chapter executed once, under nbval, and the
# book built from clean from those executions (test-book); then the browser tests: the built
# pages in headless Chromium (no network) and the chapters in a live JupyterLab
# (tests/browser/test_jupyterlab.py, 3 min at most; it runs after the chapters so the
# engine's numba cache is warm).
test: $(STAMP) chromium lint
	$(BIN)/python -m pytest tests -q --ignore=tests/browser
	$(MAKE) test-book
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
LINT_PATHS := sharpness_lib tests benchmarks book/*.ipynb book/conftest.py book/_ext
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

# Every chapter executed once, under nbval (`--nbval-lax`: a cell that raises, a hidden check
# included, fails; cells marked NBVAL_CHECK_OUTPUT are compared). The book-cache plugin
# (book/_ext/nbval_book_cache.py) stores each passing chapter's outputs in the build's
# execution cache, so the build from clean with -W that follows renders them instead of
# executing the chapters a second time.
BOOK_CACHE := _build/.jupyter_cache
test-book: vendor
	rm -rf _build
	$(BIN)/python -m pytest book/*.ipynb -q -p no:cacheprovider --nbval-lax \
		--nbval-current-env --nbval-cell-timeout=600 --book-cache=$(BOOK_CACHE)
	$(BIN)/jupyter-book build . -W --keep-going

# Open the built pages in headless Chromium with no network (needs `make book` and chromium).
test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -q

clean:
	rm -rf _build .pytest_cache .jupyter_cache
