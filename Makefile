# Everything runs from a virtualenv in .venv, made on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint start stop stop-all clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

NBVAL := --nbval --nbval-sanitize-with notebooks/sanitize.cfg

## The main job: a local Cassandra node, the sample data, the notebooks executed to HTML.
## The node keeps running afterwards, for JupyterLab; `make stop` ends it.
demo: install start
	$(PY) scripts/run_notebooks.py --out build/notebooks

## Every test suite and notebook against real nodes (started here when not already running):
## first everything that needs single nodes, then the three-node suites on their own
## (never more than three nodes alive at once).
test: install
	$(PY) scripts/with_node.py $(PY) -m pytest -m "not cluster3" $(NBVAL) tests notebooks
	$(PY) -m pytest -m cluster3 tests

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
