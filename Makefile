# The two commands of README.md. Each one installs what it needs first.
PYTHON ?= python

.PHONY: install repro test bench

install:
	$(PYTHON) -m pip install -e ".[dev]"

# Set up and run the whole pipeline (the quick profile: Digits, offline).
repro: install
	dvc repro

# Set up and run the tests (unit tests and the nbval notebook regressions).
test: install
	$(PYTHON) -m pytest

bench: install
	$(PYTHON) benchmarks/step_cost.py
