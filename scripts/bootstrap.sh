#!/usr/bin/env bash
# Creates .venv (if missing) and installs the developer environment: the production lock
# (requirements.txt), the test lock (requirements-test.txt) and leadflow itself (editable).
# Re-running is cheap: it reinstalls only when a lock or pyproject.toml changed.
#
# PYTHON picks the interpreter (`PYTHON=python3.12 scripts/bootstrap.sh`, `make test PYTHON=...`).
# Given explicitly, an existing .venv of another Python version is recreated with it; left unset,
# python3.11 (or python3) makes a new .venv and an existing one of a supported version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# Keep in step with requires-python in pyproject.toml (tests/unit/test_dependencies.py checks).
SUPPORTED_PYTHONS="3.11 3.12"

py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
supported() { [[ " $SUPPORTED_PYTHONS " == *" $1 "* ]]; }
versions=${SUPPORTED_PYTHONS// / or }

if [ -n "${PYTHON:-}" ]; then
  explicit=1
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "bootstrap: PYTHON=$PYTHON is not an interpreter on PATH; install it, or set PYTHON to a Python $versions interpreter (e.g. PYTHON=python3.11)." >&2
    exit 1
  fi
else
  explicit=0
  PYTHON=python3.11
  command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
fi
if ! want=$(py_version "$PYTHON"); then
  echo "bootstrap: PYTHON=$PYTHON did not run (see above); set PYTHON to a working Python $versions interpreter." >&2
  exit 1
fi
if ! supported "$want"; then
  echo "bootstrap: $PYTHON is Python $want; leadflow supports Python $versions. Set PYTHON to one of those (e.g. make test PYTHON=python3.11)." >&2
  exit 1
fi

if [ -x .venv/bin/python ]; then
  have=$(py_version .venv/bin/python || echo unknown)
  if [ "$have" != "$want" ] && { [ "$explicit" = 1 ] || ! supported "$have"; }; then
    echo "recreating .venv: it has Python $have, $PYTHON is Python $want"
    rm -rf .venv
  fi
fi

stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt requirements.txt ] && [ "$stamp" -nt requirements-test.txt ] \
    && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# A venv made by `uv venv` has no pip: give it one (ensurepip ships with Python).
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  .venv/bin/python -m ensurepip >/dev/null
fi
# Both locks in one install: the test lock is constrained by the production one, so they agree.
# uv resolves and installs them in seconds; pip is the fallback.
if .venv/bin/python -m pip install -q --disable-pip-version-check uv; then
  VIRTUAL_ENV=.venv .venv/bin/uv pip install -q -r requirements.txt -r requirements-test.txt
  VIRTUAL_ENV=.venv .venv/bin/uv pip install -q --no-deps -e .
else
  .venv/bin/python -m pip install -q -r requirements.txt -r requirements-test.txt
  .venv/bin/python -m pip install -q --no-deps -e .
fi
touch "$stamp"
echo "environment ready (.venv, $(.venv/bin/python --version))"
