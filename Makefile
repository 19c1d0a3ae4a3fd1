# Each target creates .venv when no virtual environment is active.
PYTHON ?= python3
ifdef VIRTUAL_ENV
VENV_PY := $(VIRTUAL_ENV)/bin/python
else
VENV_PY := .venv/bin/python
endif
ARGS ?=

.PHONY: install run test lint bench clean

$(VENV_PY):
	$(PYTHON) -m venv .venv

install: $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -e '.[dev]'

run: install
	$(VENV_PY) -m experiments.mnist $(ARGS)

test: install
	$(VENV_PY) -m pytest -q tests

lint: install
	$(VENV_PY) -m ruff check dcan_jax experiments tests benchmarks
	$(VENV_PY) -m ruff format --check dcan_jax experiments tests benchmarks

clean:
	rm -rf .venv build *.egg-info .pytest_cache
