# asyncarr — every target sets itself up from nothing (a fresh clone).
#   make demo   create the venv, install, run the demo job on the local disk
#   make test   install everything the tests need (Python packages, Azurite) and run all checks and tests
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
# The native batch kernel (optional C extension): rebuilt when its sources change.
KERNEL_SRC := setup.py $(wildcard asyncarr/kernel/csrc/*.c asyncarr/kernel/csrc/*.h)

.PHONY: demo test check lint typecheck layers pytest bench bench-quick bench-scaling bench-floor install install-test clean

$(PY):
	"$$(scripts/find-python.sh)" -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml requirements/constraints.txt $(KERNEL_SRC)
	scripts/install-native-deps.sh $(PY)
	$(PIP) install -q -c requirements/constraints.txt -e .
	$(PY) -c 'import asyncarr.kernel as k; print("native kernel:", k.kernel_versions() or k.kernel_unavailable_reason())'
	touch $@

$(STAMP)-test: $(STAMP) pyproject.toml requirements/constraints.txt
	$(PIP) install -q -c requirements/constraints.txt -e '.[all,test]'
	touch $@

$(STAMP)-bench: $(STAMP)-test pyproject.toml requirements/constraints.txt
	$(PIP) install -q -c requirements/constraints.txt -e '.[all,test,bench]'
	touch $@

install: $(STAMP)
install-test: $(STAMP)-test
	scripts/install-azurite.sh

demo: $(STAMP)
	$(VENV)/bin/asyncarr demo

check: lint typecheck layers

lint: $(STAMP)-test
	$(VENV)/bin/ruff check asyncarr tests bench examples

typecheck: $(STAMP)-test
	$(VENV)/bin/mypy

layers: $(STAMP)-test
	$(VENV)/bin/lint-imports

# The whole test run takes ~3 min on 2 cores; the outer limit turns any hang into a
# prompt failure (SIGINT makes pytest print its summary) instead of a stuck CI job.
PYTEST_LIMIT ?= 1500
pytest: install-test
	timeout --signal=INT --kill-after=60 $(PYTEST_LIMIT) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: install-test check pytest

bench: $(STAMP)-bench
	$(PY) -m bench

bench-quick: $(STAMP)-bench
	$(PY) -m bench --quick

# A full read on asyncarr's libraries with no engine: threads and processes (see bench/floor.py).
bench-floor: $(STAMP)-bench
	$(PY) -m bench.floor

# Codec-executor scaling, W = 1..16 workers (at most 200 s); see docs/benchmarks.md.
bench-scaling: $(STAMP)-bench
	$(PY) -m bench.scaling

clean:
	rm -rf $(VENV) .cache build *.egg-info .mypy_cache .ruff_cache .pytest_cache
