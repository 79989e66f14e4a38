# leadflow — the two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True
export LEADFLOW_VAR_DIR := $(CURDIR)/var
CONTACTS ?= 5000
# PYTHON: the interpreter scripts/bootstrap.sh makes .venv with (`make test PYTHON=python3.12`;
# default python3.11). Given, a .venv of another Python version is recreated.
ifdef PYTHON
export PYTHON
endif
# Bytecode caches matter here: without them every process re-compiles Airflow and Great
# Expectations (GX's import goes from ~8 s to ~20 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup airflow-db run test bench airflow lock clean
help:
	@echo "make run     set up, start the CRM sandbox, run the leadflow_hubspot DAG, print the summary"
	@echo "make test    set up, run the whole test suite (SQLite and a throw-away PostgreSQL)"
	@echo "make airflow Airflow UI (airflow standalone) plus the sandbox"
	@echo "make bench   benchmarks with same-run baselines"

setup:
	@scripts/bootstrap.sh

$(AIRFLOW_HOME)/.migrated: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	@echo "preparing Airflow metadata database in $(AIRFLOW_HOME)"
	@airflow db migrate >$(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -30 $(AIRFLOW_HOME)/migrate.log; exit 1)
	@airflow pools set leadflow_hubspot 4 "HubSpot API calls (100 requests / 10 s shared by the slots)" >/dev/null
	@airflow pools set leadflow_salesforce 4 "Salesforce API calls" >/dev/null
	@touch $@

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	@scripts/bootstrap.sh

airflow-db: setup $(AIRFLOW_HOME)/.migrated

run: setup airflow-db
	@python -m leadflow.devrun --contacts $(CONTACTS) --summary hubspot -- airflow dags test leadflow_hubspot

# Tests run in parallel worker processes (pytest-xdist), one per core up to 4: most of the suite
# waits on real servers (the sandbox, PostgreSQL, Airflow), so workers overlap those waits.
# `make test TEST_WORKERS=0` runs everything in this one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 4 ? 4 : (n < 2 ? 2 : n) )))
test: setup
	@scripts/ensure_test_tools.sh
	@scripts/ensure_redis.sh
	@python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: setup
	@python bench/run_all.py

airflow: setup airflow-db
	@python -m leadflow.devrun --contacts $(CONTACTS) --standalone -- airflow standalone

# Both locks are universal (markers, not one interpreter's resolution) from Python 3.11 up, so
# they install on every Python that pyproject.toml's requires-python allows. The test lock is
# constrained by the production one (-c requirements.txt in requirements-test.in).
lock:
	@$(BIN)/uv pip compile -q requirements.in --universal --python-version 3.11 -o requirements.txt
	@$(BIN)/uv pip compile -q requirements-test.in --universal --python-version 3.11 -o requirements-test.txt

clean:
	rm -rf $(AIRFLOW_HOME) var
