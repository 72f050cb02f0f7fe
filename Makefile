# Everything runs from a virtualenv in .venv, made on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint start stop stop-all clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: a local Cassandra node, the sample data, the notebooks executed.
demo: install start
	$(PY) -m cassnb.local status

## Every test suite against real nodes (started here when not already running).
test: install
	$(PY) -m pytest -m "not cluster3"
	$(PY) -m pytest -m cluster3

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

start: install
	$(PY) -m cassnb.local start

stop:
	$(PY) -m cassnb.local stop

stop-all:
	@if [ -x $(PY) ]; then $(PY) -m cassnb.local stop --all; fi

clean: stop-all
	rm -rf $(VENV) build *.egg-info
