# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench killtest killtest-workers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stemcat demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The pure tier (no server, no Prefect) and the middle tier (tests/steps: the separation steps
# against a scripted API and a temporary ledger): under a minute on 2 cores.
# Multi-process component tests (catalog under contention, a charting subprocess) stay in `make test`.
FAST_TESTS := tests/unit tests/steps tests/client tests/export tests/catalog \
	tests/pacing/test_admission_rules.py tests/quality/test_quality_metrics.py tests/sim/test_sim_units.py
NOT_FAST := --ignore=tests/catalog/test_catalog_processes.py --ignore=tests/catalog/test_chart_dirs.py

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NOT_FAST) $(FAST_TESTS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

killtest: $(STAMP)
	$(BIN)/python -m tests.killtest --kills 100

# Two workers sharing a throwaway PostgreSQL ledger (crashed once) and stems on a SeaweedFS server.
killtest-workers: $(STAMP)
	$(BIN)/python -m tests.killtest_workers --kills 40 --tracks 72

clean:
	rm -rf $(VENV) stemcat-data .pytest_cache
