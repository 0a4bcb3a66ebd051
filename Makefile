# The two commands of README.md. Each sets up what it needs first, in its own environment (.venv,
# made here with the Python it finds; PYTHON=python3.12 make test picks another), never in the Python it
# was started from: a system Python that refuses installs (externally managed) is never touched.
# Versions come from constraints.txt, those the goldens were made with.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"

# Set up and run the whole pipeline (the quick profile: Digits, offline).
repro: install
	$(BIN)/dvc repro

# Set up and run the tests (unit tests and the nbval notebook regressions), then the notebook
# regressions again under the other BLAS path on one thread: a golden that prints a number float
# rounding moves (between CPUs, BLAS paths, thread counts) fails one of the two.
# -v names each test as it starts (a slow one is never a silent stretch); --durations lists the slowest.
test: install
	$(BIN)/python -m pytest -v --durations=15
	SALREPRO_BLAS=torch OMP_NUM_THREADS=1 $(BIN)/python -m pytest -v tests/notebooks

bench: install
	$(BIN)/python benchmarks/step_cost.py
