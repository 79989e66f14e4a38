#!/usr/bin/env bash
# Shows that the production lock alone runs leadflow: in a new throw-away venv it installs
# requirements.txt and leadflow (--no-deps, as the Dockerfile does), then imports every module of
# the leadflow package and the plugin, every third-party module that include/, dags/ or plugins/
# import anywhere (also inside functions: scripts/third_party_imports.py lists them), and parses
# dags/ with Airflow's DagBag. No test extra is installed; the check also fails if one is
# importable anyway (it would hide a missing runtime dependency).
#
# Usage: scripts/check_production_lock.sh   (PYTHON=python3.12 to use another interpreter;
#        KEEP_VENV=1 to keep the venv and print its path)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

work=$(mktemp -d "${TMPDIR:-/tmp}/leadflow-prodlock.XXXXXX")
cleanup() { if [ "${KEEP_VENV:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

start=$SECONDS
echo "production lock check: $($PYTHON --version) in $work/venv"
"$PYTHON" -m venv "$work/venv"
# uv (from the developer .venv when there is one) installs in seconds; pip is the fallback.
uv=$(command -v uv || true)
[ -x "$repo/.venv/bin/uv" ] && uv=$repo/.venv/bin/uv
if [ -n "$uv" ]; then
  VIRTUAL_ENV=$work/venv "$uv" pip install -q -r requirements.txt
  VIRTUAL_ENV=$work/venv "$uv" pip install -q --no-deps -e .
else
  "$work/venv/bin/python" -m pip install -q -r requirements.txt
  "$work/venv/bin/python" -m pip install -q --no-deps -e .
fi
echo "installed requirements.txt ($(grep -c "^[A-Za-z]" requirements.txt) pins) and leadflow in $((SECONDS - start)) s"

# A fresh Airflow home: nothing of the developer's configuration or database is read.
mkdir -p "$work/airflow"
AIRFLOW_HOME=$work/airflow AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING \
AIRFLOW__CORE__DAGS_FOLDER=$repo/dags AIRFLOW__CORE__PLUGINS_FOLDER=$repo/plugins \
LEADFLOW_VAR_DIR=$work/var PYTHONPATH=$repo/plugins \
  "$work/venv/bin/python" - "$repo" <<'PY'
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

repo = Path(sys.argv[1])
failures = []

# Test-only distributions must be absent, or this check proves nothing.
test_only = ["pytest", "hypothesis", "time_machine", "hubspot", "simple_salesforce", "check_jsonschema"]
present = [name for name in test_only if importlib.util.find_spec(name) is not None]
if present:
    failures.append(f"test-only packages are installed: {', '.join(present)}")

import leadflow

modules = [m.name for m in pkgutil.walk_packages(leadflow.__path__, "leadflow.")]
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:  # any failure to import is what this check reports
        failures.append(f"import {name}: {type(exc).__name__}: {exc}")
print(f"imported leadflow and {len(modules)} of its modules")

# Deferred imports (inside functions) are only reached when the code runs: import each directly.
sys.path.insert(0, str(repo / "scripts"))
from third_party_imports import third_party

deferred = third_party([repo / "include", repo / "dags", repo / "plugins"])
for name in sorted(deferred):
    try:
        importlib.import_module(name)
    except Exception as exc:
        where = ", ".join(sorted(deferred[name]))
        failures.append(f"import {name} (in {where}): {type(exc).__name__}: {exc}")
print(f"imported the {len(deferred)} third-party modules that include/, dags/ and plugins/ import")

try:
    importlib.import_module("leadflow_plugin")
    print("imported plugins/leadflow_plugin.py")
except Exception as exc:
    failures.append(f"import plugins/leadflow_plugin.py: {type(exc).__name__}: {exc}")

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=str(repo / "dags"))
for path, error in bag.import_errors.items():
    failures.append(f"DAG file {path}: {error.strip().splitlines()[-1]}")
dag_files = sorted(p.name for p in (repo / "dags").glob("*.py"))
print(f"DagBag: {len(dag_files)} DAG files ({', '.join(dag_files)}), {len(bag.dag_ids)} DAGs "
      f"({', '.join(sorted(bag.dag_ids))}), {len(bag.import_errors)} import errors")

if failures:
    print("FAILED: the production lock does not run leadflow:", *failures, sep="\n  ", file=sys.stderr)
    print("Fix: declare the missing package in requirements.in and pyproject.toml, then `make lock`.",
          file=sys.stderr)
    sys.exit(1)
print("OK: requirements.txt alone imports leadflow, the plugin and every DAG")
PY
echo "done in $((SECONDS - start)) s"
