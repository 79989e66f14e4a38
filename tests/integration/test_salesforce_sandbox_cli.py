"""`leadflow sandbox serve` also serves the Salesforce org and prints its ready-to-eval connection."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leadflow.connections import get_connection
from leadflow.crm.salesforce import SalesforceConnector


pytestmark = pytest.mark.slow  # each test starts a process that imports, seeds and serves


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "sandbox exited"
        time.sleep(0.1)
    raise AssertionError("the sandbox did not become ready")


def test_serve_prints_an_evaluable_salesforce_connection_that_the_connector_uses(tmp_path: Path, terminate) -> None:
    ready = tmp_path / "ready.sh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadflow.sandbox.cli", "sandbox", "serve", "--db", str(tmp_path / "crm.db"),
         "--contacts", "120", "--seed", "5", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        text = _wait_for(ready, proc)
        lines = [l for l in text.splitlines() if l.startswith("export AIRFLOW_CONN_LEADFLOW_SALESFORCE=")]
        assert len(lines) == 1
        name, _, value = lines[0].removeprefix("export ").partition("=")
        environ = {name: shlex.split(value)[0]}
        conn = get_connection("leadflow_salesforce", environ)
        assert conn.base_url.startswith("https://127.0.0.1:") and Path(conn.extra["verify"]).exists()
        with SalesforceConnector.from_connection(conn) as connector:
            ids = [lead["record_id"] for page in connector.pull(None) for lead in page.leads]
        assert len(ids) == 120
    finally:
        terminate(proc)
    assert proc.returncode == 0


def test_salesforce_port_off_serves_hubspot_only(tmp_path: Path, terminate) -> None:
    ready = tmp_path / "ready.sh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadflow.sandbox.cli", "sandbox", "serve", "--db", str(tmp_path / "crm.db"),
         "--contacts", "20", "--salesforce-port", "off", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text = _wait_for(ready, proc)
        assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in text and "LEADFLOW_SALESFORCE" not in text
    finally:
        terminate(proc)
