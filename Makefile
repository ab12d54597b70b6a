# The README's commands. Everything installs inside the repo: .venv/ for Python,
# node_modules/ for the cdktf CLI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

# jsii prints an end-of-life banner on Node.js 20; it is noise for us, not an error.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKPOINT_DISABLE := 1

.PHONY: setup demo test test-unit test-integration bench lint clean

setup: $(STAMP) $(NODE_STAMP)

# Everything (all extras + dev) at the exact versions of constraints.txt; pyproject.toml holds ranges only.
# The stamp depends on both, so editing either reinstalls.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/lepton demo $(ARGS)

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

# Benchmarks print and write JSON results (machine, command, baseline in the same run) to bench-results/.
# `make bench BENCH="synth data"` runs a subset.
bench: $(STAMP)
	$(PY) -m tests.bench $(BENCH)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build cdktf.out .pytest_cache
