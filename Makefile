# The README's commands. Everything installs inside the repo: .venv/ for Python,
# node_modules/ for the cdktf CLI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
TRITON_STAMP := build/triton/.installed-stamp
TRITONCLIENT_STAMP := build/tritonclient/.installed-stamp

# jsii prints an end-of-life banner on Node.js 20; it is noise for us, not an error.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKPOINT_DISABLE := 1

.PHONY: setup demo test test-unit test-integration bench docs lint clean

setup: $(STAMP) $(NODE_STAMP)

# Everything (all extras + dev) at the exact versions of constraints.txt; pyproject.toml holds ranges only.
# The stamp depends on both, so editing either reinstalls.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev,docs]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The real Triton (the nvidia-pytriton wheel: tritonserver + Python backend) and Triton's client (tritonclient, which
# needs protobuf < 7 and so cannot live in .venv), each in its own tool folder, for the real-Triton tests and the serve
# benchmark. The installer does nothing when the pinned versions are already there; the stamps skip even that.
$(TRITON_STAMP): tests/support/triton.py $(STAMP)
	$(PY) -m tests.support.triton triton
	@touch $@

$(TRITONCLIENT_STAMP): tests/support/triton.py $(STAMP)
	$(PY) -m tests.support.triton tritonclient
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/lepton demo $(ARGS)

# Three workers, one test file each at a time (module fixtures stay in one process): the terraform applies against
# moto spend most of their time waiting on the provider's polling, so they overlap well even on 2 cores.
# `make test PYTEST_WORKERS=` runs in one process.
PYTEST_WORKERS ?= -n 3 --dist loadfile

test: $(STAMP) $(NODE_STAMP) $(TRITON_STAMP) $(TRITONCLIENT_STAMP)
	$(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: $(STAMP) $(NODE_STAMP) $(TRITON_STAMP) $(TRITONCLIENT_STAMP)
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

# Benchmarks print and write JSON results (machine, command, baseline in the same run) to bench-results/.
# `make bench BENCH="synth data"` runs a subset.
bench: $(STAMP) $(TRITON_STAMP) $(TRITONCLIENT_STAMP)
	$(PY) -m tests.bench $(BENCH)

# The docs site (mkdocs.yml, docs/) into build/site, strict: a broken link or reference fails. `make test` builds it
# the same way (tests/unit/test_docs.py). NO_MKDOCS_2_WARNING silences Material's end-of-life banner: docs/index.md says it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build cdktf.out .pytest_cache
