# Each target creates .venv when no virtual environment is active.
PYTHON ?= python3
ifdef VIRTUAL_ENV
VENV_PY := $(VIRTUAL_ENV)/bin/python
else
VENV_PY := .venv/bin/python
endif
ARGS ?=
# Test processes; each test file runs whole in one of them.
TEST_WORKERS ?= 2
# PyTorch and ClustPy for the benchmarks' peer comparison, kept out of .venv.
TORCH_ENV := .venv-bench-torch

.PHONY: install run test lint bench bench-torch-env clean

$(VENV_PY):
	$(PYTHON) -m venv .venv

install: $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -e '.[dev]'

run: install
	$(VENV_PY) -m experiments.mnist $(ARGS)

test: install
	$(VENV_PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

lint: install
	$(VENV_PY) -m ruff check dcan_jax experiments tests benchmarks
	$(VENV_PY) -m ruff format --check dcan_jax experiments tests benchmarks

$(TORCH_ENV)/installed: benchmarks/requirements-torch.txt
	$(PYTHON) -m venv $(TORCH_ENV)
	$(TORCH_ENV)/bin/python -m pip install --quiet -r benchmarks/requirements-torch.txt
	touch $@

bench-torch-env: $(TORCH_ENV)/installed

# Writes docs/benchmarks.md and its raw results, docs/benchmarks.json. If the
# PyTorch environment cannot be installed, the page records that the ClustPy
# comparison did not run.
bench: install
	$(VENV_PY) -m pip install --quiet -e '.[bench]'
	-$(MAKE) bench-torch-env
	$(VENV_PY) -m benchmarks --json docs/benchmarks.json $(ARGS)

clean:
	rm -rf .venv $(TORCH_ENV) build *.egg-info .pytest_cache
