#!/usr/bin/env bash
# Creates .venv (if missing) and installs the locked requirements plus leadflow itself.
# Re-running is cheap: it reinstalls only when requirements.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt requirements.txt ] && [ "$stamp" -nt pyproject.toml ]; then
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
# uv resolves and installs the lock in seconds; pip is the fallback.
if .venv/bin/python -m pip install -q --disable-pip-version-check uv; then
  VIRTUAL_ENV=.venv .venv/bin/uv pip install -q -r requirements.txt
  VIRTUAL_ENV=.venv .venv/bin/uv pip install -q --no-deps -e .
else
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
fi
touch "$stamp"
echo "environment ready (.venv)"
