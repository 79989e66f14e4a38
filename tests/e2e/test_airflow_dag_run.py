"""End to end: Airflow itself (`airflow dags test`) runs leadflow_hubspot against the sandbox,
started the way `make run` starts it; the CRM then holds the scores, and a second run pushes 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from leadflow.devrun import start_sandbox, stop

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONTACTS = 1500

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    var = tmp_path_factory.mktemp("var")
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        LEADFLOW_VAR_DIR=str(var),
        LEADFLOW_WAREHOUSE_URL=f"sqlite:///{var / 'warehouse.db'}",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for crm in ("hubspot", "salesforce"):
        subprocess.run([str(BIN / "airflow"), "pools", "set", f"leadflow_{crm}", "4", f"{crm} API"], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc, sandbox_env = start_sandbox(var, CONTACTS, ["--seed", "7"])
    env.update(sandbox_env)
    try:
        yield env
    finally:
        stop(proc)


def _dags_test(env, dag_id: str = "leadflow_hubspot") -> None:
    result = subprocess.run([str(BIN / "airflow"), "dags", "test", dag_id], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "leadflow" in result.stdout + result.stderr


def _utc_day():
    return datetime.now(timezone.utc).date()


def _rerun_on_the_same_day(env, crm: str, previous_started_on) -> tuple[dict, dict]:
    """Runs leadflow_`crm` again until a run ends on the UTC day the run before it started, and
    returns the reports of those two runs: a run scores as of the day it started, so across
    midnight every score decays by a day, and a same-day re-run is what must write nothing."""
    previous = _report(env, crm)
    while True:
        started_on = _utc_day()
        _dags_test(env, f"leadflow_{crm}")
        latest = _report(env, crm)
        if _utc_day() == previous_started_on:
            return previous, latest
        print(f"runs crossed midnight UTC: {crm} runs once more")
        previous, previous_started_on = latest, started_on


def _report(env, crm: str = "hubspot") -> dict:
    out = subprocess.run([sys.executable, "-m", "leadflow.cli", "report", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[crm]


def _crm_contacts_with_scores(env) -> int:
    conn = json.loads(env["AIRFLOW_CONN_LEADFLOW_HUBSPOT"])
    base = f"{conn['schema']}://{conn['host']}:{conn['port']}"
    body = {"filterGroups": [{"filters": [{"propertyName": "leadflow_score", "operator": "HAS_PROPERTY"}]}],
            "limit": 1, "properties": ["leadflow_score"]}
    resp = requests.post(f"{base}/crm/v3/objects/contacts/search", json=body,
                         headers={"Authorization": f"Bearer {conn['password']}"}, timeout=30)
    resp.raise_for_status()
    return resp.json()["total"]


def test_first_run_scores_and_writes_back_then_second_run_pushes_nothing(env):
    started_on = _utc_day()
    _dags_test(env)
    first = _report(env)
    assert first["status"] == "success"
    assert first["pulled"] == CONTACTS
    assert first["scored"] > 0 and first["pushed"] > 0 and first["rejected"] == 0
    assert _crm_contacts_with_scores(env) == first["pushed"]

    previous, second = _rerun_on_the_same_day(env, "hubspot", started_on)
    assert second["run_id"] != previous["run_id"]
    # the second pull sees the contacts leadflow wrote (their lastmodifieddate moved) ...
    assert second["pulled"] >= previous["pushed"]
    # ... and finds nothing left to change
    assert second["changed"] == 0 and second["pushed"] == 0


def _salesforce_leads_with_scores(env) -> int:
    from leadflow.crm.salesforce_session import make_http_session

    conn = json.loads(env["AIRFLOW_CONN_LEADFLOW_SALESFORCE"])
    session = make_http_session(conn.get("extra", {}).get("verify"))
    url = f"https://{conn['host']}:{conn['port']}/services/data/v59.0/query"
    headers = {"Authorization": f"Bearer {conn['password']}"}
    resp = session.get(url, params={"q": "SELECT Id, Leadflow_Score__c FROM Lead"}, headers=headers, timeout=30)
    scored = 0
    while True:
        resp.raise_for_status()
        body = resp.json()
        scored += sum(1 for r in body["records"] if r.get("Leadflow_Score__c") is not None)
        if body.get("done", True):
            return scored
        resp = session.get(f"https://{conn['host']}:{conn['port']}{body['nextRecordsUrl']}", headers=headers,
                           timeout=30)


def test_salesforce_dag_scores_and_writes_back_then_second_run_writes_nothing(env):
    started_on = _utc_day()
    _dags_test(env, "leadflow_salesforce")
    first = _report(env, "salesforce")
    assert first["status"] == "success"
    assert first["pulled"] == CONTACTS and first["pushed"] > 0 and first["rejected"] == 0
    assert _salesforce_leads_with_scores(env) == first["pushed"]

    _, second = _rerun_on_the_same_day(env, "salesforce", started_on)
    assert second["changed"] == 0 and second["pushed"] == 0
