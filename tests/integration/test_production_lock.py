"""requirements.txt alone runs leadflow: scripts/check_production_lock.sh in a fresh venv.

About 20-30 s with the uv cache that `make setup` fills (same pins); the install is the cost.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_production_lock_alone_imports_leadflow_its_third_party_modules_and_every_dag(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    # The developer venv's interpreter makes the new venv; its packages are not visible there.
    result = subprocess.run([str(REPO / "scripts" / "check_production_lock.sh")], env=env,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: requirements.txt alone imports leadflow, the plugin and every DAG" in result.stdout
    assert ", 0 import errors" in result.stdout
    assert list(tmp_path.glob("leadflow-prodlock.*")) == []  # the throw-away venv is removed
