"""End to end: Airflow itself (`airflow dags test`) runs leadflow_hubspot on a batch the quality
gate refuses — a fifth of the CRM's contacts got a mangled e-mail address, as a bad list import
leaves them. `validate_gate` fails once, without retries; nothing after it runs and the CRM gets
no write; `leadflow report --json` and the Leadflow page show the run `failed` with the gate's
reason in counts; the alert webhook receives exactly one notification, linking to the run."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from failed_runs import AlertWebhook, dags_test, failed_run_env, report_json, task_instances
from leadflow.sandbox.history import IMPORT
from leadflow.sandbox.server import running_sandbox

pytestmark = pytest.mark.slow

CONTACTS = 60  # the smallest world the gate's shares apply to comfortably (min_rows_for_shares: 20)
BROKEN = "not-an-email"
DOWNSTREAM = ("qualify", "accounts", "validate_scores", "plan_push", "push", "push_accounts", "report")


def _mangle_emails(store, every: int) -> int:
    """Every `every`-th contact's e-mail made invalid, as an import writes it (the sandbox's API
    would refuse the value); returns how many."""
    rows = store.list_page("contacts", after_id=0, limit=CONTACTS + 10)[::every]
    changes = []
    for row in rows:
        changes.append((row.id, "email", row.props.get("email"), BROKEN))
        row.props["email"] = BROKEN
    store.save("contacts", rows, changes, at_ms=max(r.modified_ms for r in rows), source=IMPORT)
    return len(rows)


@pytest.fixture
def hook():
    hook = AlertWebhook()
    yield hook
    hook.close()


def _page_data(env: dict[str, str]) -> tuple[dict, str]:
    """The Leadflow page's JSON and HTML for hubspot, from the run's warehouse (the user check
    stubbed: tests/unit/ui/test_leadflow_auth.py covers it)."""
    from leadflow.ui.app import create_app
    from leadflow.ui.auth import require_user
    from leadflow.warehouse.db import get_engine

    engine = get_engine(env["LEADFLOW_WAREHOUSE_URL"])
    try:
        app = create_app(lambda: engine)
        app.dependency_overrides[require_user] = lambda: None
        client = TestClient(app)
        return client.get("/api/data", params={"crm": "hubspot"}).json()["data"], client.get("/").text
    finally:
        engine.dispose()


def test_given_a_broken_batch_then_the_gate_fails_once_nothing_is_written_and_one_alert_links_the_run(
        tmp_path, hook):
    with running_sandbox(contacts=CONTACTS, seed=9, db_path=tmp_path / "crm.db", rate_limit="off",
                         search_rate_limit="off") as sandbox:
        broken = _mangle_emails(sandbox.store, every=5)
        writes_before = len(sandbox.store.writes())
        crm = {"host": "127.0.0.1", "port": sandbox.port, "schema": "http"}
        env = failed_run_env(tmp_path, hook.url,
                             leadflow_hubspot={"conn_type": "http", **crm, "password": sandbox.token},
                             leadflow_enrichment={"conn_type": "http", **crm, "password": sandbox.enrichment_key})

        log = dags_test(env)

        assert "state=failed" in log[-8000:], log[-8000:]  # Airflow's own verdict on the run
        assert len(sandbox.store.writes()) == writes_before  # not one property written to the CRM
        calls = sandbox.context.stats.snapshot()["byEndpoint"]
        assert not [c for c in calls if c.startswith(("PATCH", "PUT", "DELETE")) or "/batch/update" in c
                    or "/batch/upsert" in c or "/properties" in c and c.startswith("POST")], calls

    tis = task_instances(env)
    assert tis["validate_gate"] == ("failed", 1), tis  # one try: it failed with AirflowFailException
    assert "AirflowFailException: QualityGateError: data quality gate failed" in log, log[-8000:]
    assert BROKEN not in log  # the task logs: counts and ids, no row values
    assert all(state == "success" for task, (state, _) in tis.items()
               if task.split("[")[0] in ("extract", "shard_list", "enrich", "validate")), tis
    ran_after = {task: state for task, (state, _) in tis.items() if task.split("[")[0] in DOWNSTREAM}
    assert ran_after and set(ran_after.values()) == {"upstream_failed"}, tis
    assert tis["close_run"][0] == "success", tis

    assert len(hook.alerts) == 1, log[-8000:]
    (alert,) = hook.alerts
    assert alert["reasons"] == ["failed"] and alert["unfinished_tasks"]["validate_gate"] == "failed"
    gate_error = next(e for e in alert["errors"] if e.startswith("validate_gate: "))
    assert "QualityGateError" in gate_error and "quarantine_share" in gate_error
    hubspot = report_json(env)
    # The reason in counts: the open leads among the broken contacts, of the open leads validated.
    assert 0 < hubspot["quarantined"] <= broken
    assert f"({hubspot['quarantined']} of {hubspot['validated']} rows)" in gate_error
    assert alert["airflow_url"] == f"http://airflow.example:8080/dags/leadflow_hubspot/runs/{quote(alert['run_id'])}"
    assert BROKEN not in json.dumps(alert) and "@" not in json.dumps(alert)  # no row values

    assert hubspot["status"] == "failed" and hubspot["run_id"] == alert["run_id"]
    assert hubspot["failed_tasks"] == ["validate_gate"] and hubspot["dq_failed_checks"] == 1
    assert hubspot["pushed"] == 0 and hubspot["scored"] == 0
    assert gate_error in hubspot["errors"] and BROKEN not in json.dumps(hubspot)

    data, html = _page_data(env)
    (run,) = data["runs"]
    assert run["run_id"] == alert["run_id"] and run["status"] == "failed"
    # the failed gate check, and the row check that quarantined the leads
    assert {f["check"] for f in data["dq"][run["run_id"]]["failures"]} == {"quarantine_share", "email_syntax:email"}
    assert 'class="status-failed">failed<' in html and alert["run_id"] in html
