"""The sandbox as a real HTTP server: limits, the 10,000 cap, timeouts, persistence, the CLI."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest
import requests

from leadflow.sandbox.search import compile_search, parse_search_request
from leadflow.sandbox.server import running_sandbox


def _auth(sb):
    return {"Authorization": f"Bearer {sb.token}"}


def _cursor_body(after="0", limit=200, since=0):
    return {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                           "value": str(since)}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email"], "limit": limit, "after": after}


def test_over_the_limit_answers_429_with_hubspots_body_and_headers(tmp_path):
    with running_sandbox(contacts=50, db_path=tmp_path / "crm.db", rate_limit="4/10") as sb:
        answers = [requests.get(f"{sb.base_url}/crm/v3/objects/contacts", headers=_auth(sb), timeout=10)
                   for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert answers[3].headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answers[4].headers["X-HubSpot-RateLimit-Max"] == "4"
    body = answers[4].json()
    assert body == {**body, "status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING",
                    "message": "You have reached your ten_secondly_rolling limit."}


def test_search_past_10000_results_is_a_400_even_when_paging_points_there(tmp_path):
    with running_sandbox(contacts=10_050, seed=3, db_path=tmp_path / "crm.db", rate_limit="off",
                         search_rate_limit="off") as sb:
        url = f"{sb.base_url}/crm/v3/objects/contacts/search"
        last_ok = requests.post(url, json=_cursor_body(after="9800"), headers=_auth(sb), timeout=10)
        assert last_ok.status_code == 200 and last_ok.json()["total"] == 10_050
        next_after = last_ok.json()["paging"]["next"]["after"]
        assert next_after == "10000"  # HubSpot hands out the cursor...
        refused = requests.post(url, json=_cursor_body(after=next_after), headers=_auth(sb), timeout=10)
    assert refused.status_code == 400  # ...and refuses to honour it
    assert refused.json()["category"] == "VALIDATION_ERROR" and "10000" in refused.json()["message"]


def test_timeout_fault_applies_the_write_but_the_client_never_hears(tmp_path):
    with running_sandbox(contacts=50, db_path=tmp_path / "crm.db", faults="timeout=1", timeout_seconds=2) as sb:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{sb.base_url}/crm/v3/objects/contacts/batch/update", headers=_auth(sb), timeout=0.5,
                          json={"inputs": [{"id": "4", "properties": {"hs_lead_status": "CONNECTED"}}]})
        assert sb.store.get_rows("contacts", [4])[4].props["hs_lead_status"] == "CONNECTED"


def test_state_and_token_survive_a_restart(tmp_path):
    db = tmp_path / "crm.db"
    with running_sandbox(contacts=100, db_path=db) as first:
        token = first.token
        r = requests.patch(f"{first.base_url}/crm/v3/objects/contacts/9", headers=_auth(first), timeout=10,
                           json={"properties": {"hs_lead_status": "BAD_TIMING"}})
        assert r.status_code == 200
    with running_sandbox(contacts=5_000, db_path=db) as second:  # reuses the world: no reseed
        assert second.token == token and second.store.count("contacts") == 100
        got = requests.get(f"{second.base_url}/crm/v3/objects/contacts/9?properties=hs_lead_status",
                           headers=_auth(second), timeout=10).json()
    assert got["properties"]["hs_lead_status"] == "BAD_TIMING"


@pytest.mark.slow
def test_cli_serve_prints_connection_lines_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "ready.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadflow.sandbox.cli", "sandbox", "serve", "--db", str(tmp_path / "crm.db"),
         "--contacts", "200", "--port", "0", "--token", "pat-cli-test-token", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ})
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        third = proc.stdout.readline()  # the Salesforce org (on by default)
        assert first.startswith("export AIRFLOW_CONN_LEADFLOW_HUBSPOT='")
        assert second.startswith("export AIRFLOW_CONN_LEADFLOW_ENRICHMENT='")
        assert third.startswith("export AIRFLOW_CONN_LEADFLOW_SALESFORCE='")
        conn = json.loads(first.split("=", 1)[1].strip().strip("'"))
        assert conn["password"] == "pat-cli-test-token" and conn["host"] == "127.0.0.1"
        deadline = time.monotonic() + 10  # the ready file is written once all servers listen
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.read_text().splitlines() == [first.strip(), second.strip(), third.strip()]
        r = requests.get(f"http://127.0.0.1:{conn['port']}/crm/v3/objects/contacts?limit=1",
                         headers={"Authorization": "Bearer pat-cli-test-token"}, timeout=10)
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
