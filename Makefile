# The two commands of README.md. Each one installs what it needs first.
PYTHON ?= python

.PHONY: install repro test bench

install:
	$(PYTHON) -m pip install -e ".[dev]"

# Set up and run the whole pipeline (the quick profile: Digits, offline).
repro: install
	dvc repro

# Set up and run the tests (unit tests and the nbval notebook regressions), then the notebook
# regressions again under the other BLAS path on one thread: a golden that prints a number float
# rounding moves (between CPUs, BLAS paths, thread counts) fails one of the two.
test: install
	$(PYTHON) -m pytest
	SALREPRO_BLAS=torch OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q tests/notebooks

bench: install
	$(PYTHON) benchmarks/step_cost.py
