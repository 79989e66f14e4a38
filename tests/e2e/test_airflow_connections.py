"""End to end: connections that exist only in Airflow's metadata database (added with
`airflow connections add`, no AIRFLOW_CONN_* variable anywhere) are what leadflow uses.

1. the api-server's connection-test endpoint (the UI's Test button) runs leadflow's hooks: OK for
   the sandbox's HubSpot and Salesforce credentials, a clear failure for a wrong token;
2. `airflow dags test leadflow_hubspot` pulls from the HubSpot connection, enriches through the
   enrichment connection (conn_type http, as before) and writes to the warehouse connection (a
   SQLite file of its own); `leadflow report` (the CLI, outside any task) reads the run from that
   same warehouse connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from e2e_processes import BIN, airflow_env, free_port, stop_group

from leadflow.devrun import start_sandbox, stop

CONTACTS = 200

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _run(env: dict[str, str], *cmd: str, timeout: float = 600) -> str:
    result = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A migrated Airflow home whose metadata database holds every leadflow connection, a running
    sandbox, and an environment without a single AIRFLOW_CONN_* or LEADFLOW_WAREHOUSE_URL."""
    home = tmp_path_factory.mktemp("airflow-home")
    var = tmp_path_factory.mktemp("var")
    proc, sandbox_env = start_sandbox(var / "sandbox", CONTACTS, ["--seed", "5"])
    try:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("AIRFLOW_CONN_") and k != "LEADFLOW_WAREHOUSE_URL"}
        env = airflow_env(home, clean, LEADFLOW_CRMS="hubspot", LEADFLOW_VAR_DIR=str(var))
        conns = {conn_id.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
                 for conn_id, value in sandbox_env.items() if conn_id.startswith("AIRFLOW_CONN_")}
        conns["leadflow_hubspot"]["conn_type"] = "leadflow_hubspot"
        conns["leadflow_salesforce"]["conn_type"] = "leadflow_salesforce"
        # leadflow_enrichment stays conn_type http: existing connections keep working.
        warehouse = var / "warehouse-from-connection.db"
        conns["leadflow_warehouse"] = {"conn_type": "sqlite", "host": str(warehouse)}
        _run(env, str(BIN / "airflow"), "db", "migrate")
        for conn_id, fields in conns.items():
            _run(env, str(BIN / "airflow"), "connections", "add", conn_id, "--conn-json", json.dumps(fields))
        yield {"env": env, "home": home, "var": var, "warehouse": warehouse, "conns": conns}
    finally:
        stop(proc)


def _api_session(base: str, home: Path, proc: subprocess.Popen, log: Path, timeout: float = 240) -> requests.Session:
    """A session signed in as the admin the SimpleAuthManager generates when the api-server starts."""
    deadline = time.monotonic() + timeout
    passwords = home / "simple_auth_manager_passwords.json.generated"
    while True:
        assert proc.poll() is None, f"the api-server exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
        try:
            password = json.loads(passwords.read_text())["admin"]
            token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                                  timeout=10).json()["access_token"]
            break
        except (OSError, ValueError, KeyError, requests.RequestException):
            if time.monotonic() > deadline:
                pytest.fail(f"the api-server did not answer within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_the_test_button_endpoint_runs_leadflows_hooks_on_metadata_db_connections(deployment):
    port = free_port()
    env = dict(deployment["env"], AIRFLOW__CORE__TEST_CONNECTION="Enabled", AIRFLOW__API__HOST="127.0.0.1",
               AIRFLOW__API__PORT=str(port), AIRFLOW__API__WORKERS="1")
    log = deployment["home"] / "api-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "--port", str(port)], env=env,
                                cwd=str(deployment["home"]), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        api = _api_session(base, deployment["home"], proc, log)

        def test(body: dict) -> dict:
            resp = api.post(f"{base}/api/v2/connections/test", json=body, timeout=60)
            assert resp.status_code == 200, resp.text
            return resp.json()

        # The stored connections, as the UI tests a saved connection (credentials from the database).
        hubspot = test({"connection_id": "leadflow_hubspot", "conn_type": "leadflow_hubspot"})
        assert hubspot["status"] is True and hubspot["message"].startswith("token OK, scopes: "), hubspot
        salesforce = test({"connection_id": "leadflow_salesforce", "conn_type": "leadflow_salesforce"})
        assert salesforce["status"] is True and salesforce["message"].startswith("token OK (session id)"), salesforce
        # An unsaved form with a wrong token.
        stored = deployment["conns"]["leadflow_hubspot"]
        wrong = test({"connection_id": "leadflow_hubspot_draft", "conn_type": "leadflow_hubspot",
                      "host": stored["host"], "port": stored["port"], "schema": stored["schema"],
                      "password": "pat-na1-wrong-token"})
        assert wrong["status"] is False and "rejected the access token (401)" in wrong["message"], wrong
    finally:
        stop_group(proc)


def _sandbox_stats(conns: dict) -> dict:
    hubspot = conns["leadflow_hubspot"]
    resp = requests.get(f"http://{hubspot['host']}:{hubspot['port']}/_sandbox/stats",
                        headers={"Authorization": f"Bearer {hubspot['password']}"}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def test_a_dag_run_and_the_cli_use_the_metadata_db_connections_for_crm_enrichment_and_warehouse(deployment):
    env, conns = deployment["env"], deployment["conns"]
    _run(env, str(BIN / "airflow"), "dags", "test", "leadflow_hubspot", timeout=900)

    stats = _sandbox_stats(conns)["byEndpoint"]
    assert stats.get("GET /crm/v3/objects/contacts", 0) > 0  # the CRM connection (a first pull lists)
    assert stats.get("POST /crm/v3/objects/contacts/batch/update", 0) > 0
    assert sum(n for endpoint, n in stats.items() if "/v2/companies" in endpoint) > 0  # the enrichment connection
    # The warehouse connection's file holds the run; the LEADFLOW_VAR_DIR default was never made.
    assert deployment["warehouse"].stat().st_size > 0
    assert not (deployment["var"] / "warehouse.db").exists()

    report = json.loads(_run(env, sys.executable, "-m", "leadflow.cli", "report", "--json"))["hubspot"]
    assert report["status"] == "success" and report["pulled"] == CONTACTS and report["pushed"] > 0
