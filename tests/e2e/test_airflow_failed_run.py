"""End to end: Airflow itself (`airflow dags test`) runs leadflow_hubspot with a token the CRM
rejects. The run fails at once (the CRM is asked once: no task retries), `leadflow report --json`
shows it `failed`, and the alert webhook — a real HTTP server on the loopback — receives exactly
one notification, naming the failed task and linking to the run. The same for a rollback that
finds no CRM connection (leadflow_rollback's teardown alerts with the error its failed task kept)."""

from __future__ import annotations

import json

import pytest

from failed_runs import AlertWebhook, dags_test, failed_run_env, report_json, task_instances

pytestmark = pytest.mark.slow


class _Server(AlertWebhook):
    """One loopback server playing two parts: the alert webhook (POST /hook, recorded) and the
    CRM (every other call answered 401, as HubSpot answers a wrong token)."""

    def __init__(self) -> None:
        self.crm_calls: list[str] = []
        super().__init__(other=self._wrong_token)

    def _wrong_token(self, handler, body: bytes) -> None:
        self.crm_calls.append(f"{handler.command} {handler.path}")
        payload = json.dumps({"status": "error", "category": "INVALID_AUTHENTICATION",
                              "message": "Authentication credentials not found."}).encode()
        handler.send_response(401)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture
def server():
    server = _Server()
    yield server
    server.close()


def test_given_a_wrong_token_then_the_run_fails_without_retries_and_sends_exactly_one_alert(tmp_path, server):
    env = failed_run_env(tmp_path, server.url, leadflow_hubspot={
        "conn_type": "http", "host": "127.0.0.1", "port": server.port, "schema": "http", "password": "wrong-token"})

    log = dags_test(env)

    assert "state=failed" in log[-8000:], log[-8000:]  # Airflow's own verdict on the run
    assert len(server.crm_calls) == 1, server.crm_calls  # one try: a wrong token is not retried
    assert len(server.alerts) == 1, log[-8000:]
    (alert,) = server.alerts
    assert alert["reasons"] == ["failed"] and alert["unfinished_tasks"]["extract"] == "failed"
    assert "extract: CrmAuthError: HubSpot rejected the token (401)" in alert["text"]
    assert alert["airflow_url"].startswith("http://airflow.example:8080/dags/leadflow_hubspot/runs/")
    assert "wrong-token" not in json.dumps(alert) and "wrong-token" not in log

    hubspot = report_json(env)
    assert hubspot["status"] == "failed" and hubspot["run_id"] == alert["run_id"]
    assert hubspot["failed_tasks"] == ["extract"]


def test_given_a_rollback_without_its_crm_connection_then_it_fails_without_retries_and_sends_exactly_one_alert(
        tmp_path, server):
    env = failed_run_env(tmp_path, server.url)  # no leadflow_hubspot connection

    log = dags_test(env, "leadflow_rollback", conf={"crm": "hubspot", "run_id": "manual__old", "dry_run": False})

    assert "state=failed" in log[-8000:], log[-8000:]
    tis = task_instances(env, "leadflow_rollback")
    assert tis["rollback_hubspot"] == ("failed", 1), tis  # one try: a missing connection is not retried
    assert tis["close_run"][0] == "success", tis
    assert len(server.alerts) == 1, log[-8000:]
    (alert,) = server.alerts
    assert alert["title"].startswith("leadflow rollback hubspot: run ") and alert["title"].endswith(" failed")
    assert alert["unfinished_tasks"] == {"rollback_hubspot": "failed"}
    (error,) = alert["errors"]
    assert error.startswith("rollback_hubspot: ConnectionNotFound: ") and "leadflow_hubspot" in error
    assert alert["airflow_url"].startswith("http://airflow.example:8080/dags/leadflow_rollback/runs/")
    assert server.crm_calls == []
