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

PHASE := scripts/phase.sh
TRIO := --name trio --nodes 3 --address 127.0.0.11

## Every test suite and notebook against real nodes (started here when not already running):
## first everything that needs single nodes, then the core, frames and scan suites again with
## the fast path off (the driver's public API only), on the same node; then the three-node
## suites on their own (never more than three nodes alive at once), each way. Each phase
## says how long it took.
test: install
	@$(PY) scripts/with_node.py -- sh -c '\
		$(PHASE) "tests on one node" $(PY) -m pytest -m "not cluster3" $(NBVAL) tests notebooks \
		&& $(PHASE) "core, frames and scan on one node, fast path off" env CASSNB_FAST_PATH=0 \
			$(PY) -m pytest -m "not cluster3" tests/core tests/frames tests/scan'
	@$(PHASE) "tests on three nodes, then scan with the fast path off" \
		$(PY) scripts/with_node.py $(TRIO) -- sh -c '$(PY) -m pytest -m cluster3 tests \
		&& CASSNB_FAST_PATH=0 $(PY) -m pytest -m cluster3 tests/scan tests/cluster3/test_next_pages.py'

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
