# Two commands on a fresh machine:
#   make dev    install into .venv, then run the whole platform (nextra dev)
#   make test   install, then lint, type-check and run the whole test suite
# Both create .venv with python3 on first use and reinstall when pyproject.toml changes.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install dev test lint types pytest soak bench docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

dev: install
	$(BIN)/nextra dev $(ARGS)

test: lint types pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest -m "not soak" $(ARGS)

soak: install
	$(BIN)/python -m pytest -m soak $(ARGS)

bench: install
	$(BIN)/python -m benchmarks.eventstore

docs: install
	$(BIN)/nextra events docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
