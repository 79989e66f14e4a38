"""End to end: Airflow itself (`airflow dags test`) runs leadflow_hubspot with a token the CRM
rejects. The run fails at once (the CRM is asked once: no task retries), `leadflow report --json`
shows it `failed`, and the alert webhook — a real HTTP server on the loopback — receives exactly
one notification, naming the failed task and linking to the run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e_processes import BIN, airflow_env

pytestmark = pytest.mark.slow


class _Server:
    """One loopback server playing two parts: the CRM (every call answered 401, as HubSpot answers
    a wrong token) and the alert webhook (POST /hook, recorded)."""

    def __init__(self) -> None:
        self.crm_calls: list[str] = []
        self.alerts: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path == "/hook":
                    server.alerts.append(json.loads(body))
                    self.send_response(204)
                    self.end_headers()
                    return
                server.crm_calls.append(f"{self.command} {self.path}")
                payload = json.dumps({"status": "error", "category": "INVALID_AUTHENTICATION",
                                      "message": "Authentication credentials not found."}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_port
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server():
    server = _Server()
    yield server
    server.close()


def test_given_a_wrong_token_then_the_run_fails_without_retries_and_sends_exactly_one_alert(tmp_path, server):
    var = tmp_path / "var"
    var.mkdir()
    env = airflow_env(
        tmp_path / "airflow-home",
        LEADFLOW_CRMS="hubspot",
        LEADFLOW_VAR_DIR=str(var),
        LEADFLOW_WAREHOUSE_URL=f"sqlite:///{var / 'warehouse.db'}",
        AIRFLOW__API__BASE_URL="http://airflow.example:8080",
        AIRFLOW_CONN_LEADFLOW_HUBSPOT=json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": server.port,
                                                  "schema": "http", "password": "wrong-token"}),
        AIRFLOW_CONN_LEADFLOW_ALERTS_WEBHOOK=json.dumps({"conn_type": "http",
                                                         "host": f"http://127.0.0.1:{server.port}/hook"}),
    )
    for name in [k for k in env if k.startswith("AIRFLOW_CONN_") and k not in
                 ("AIRFLOW_CONN_LEADFLOW_HUBSPOT", "AIRFLOW_CONN_LEADFLOW_ALERTS_WEBHOOK")]:
        del env[name]
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    run = subprocess.run([str(BIN / "airflow"), "dags", "test", "leadflow_hubspot"], env=env,
                         capture_output=True, text=True, timeout=300)
    log = run.stdout[-4000:] + run.stderr[-4000:]

    assert "state=failed" in log, log  # Airflow's own verdict on the run
    assert len(server.crm_calls) == 1, server.crm_calls  # one try: a wrong token is not retried
    assert len(server.alerts) == 1, log
    (alert,) = server.alerts
    assert alert["reasons"] == ["failed"] and alert["unfinished_tasks"]["extract"] == "failed"
    assert "extract: CrmAuthError: HubSpot rejected the token (401)" in alert["text"]
    assert alert["airflow_url"].startswith("http://airflow.example:8080/dags/leadflow_hubspot/runs/")
    assert "wrong-token" not in json.dumps(alert)

    report = subprocess.run([sys.executable, "-m", "leadflow.cli", "report", "--json"], env=env,
                            capture_output=True, text=True)
    hubspot = json.loads(report.stdout)["hubspot"]
    assert hubspot["status"] == "failed" and hubspot["run_id"] == alert["run_id"]
    assert hubspot["failed_tasks"] == ["extract"]
