"""A run's one alert: when it goes out, what it says (counts and ids, never row values), the
channels it goes through (the providers' notifiers); the teardown that closes a failed run; DAG
params as a RunContext."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
import time_machine
from airflow.sdk.exceptions import AirflowFailException

from leadflow import airflow_adapter, alerts, dag_support
from leadflow.alerts import run_alert, send
from leadflow.dag_support import run_context
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine as warehouse_engine  # before a test replaces it

CRM, DAG_ID, RUN_ID = "hubspot", "leadflow_hubspot", "scheduled__2026-11-24T02:00:00+00:00"


@pytest.fixture
def webhook(monkeypatch):
    """A real HTTP server on the loopback, configured as the webhook channel (the Airflow
    connection as an AIRFLOW_CONN_ variable, the password sent as a bearer token)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers.get("Authorization"), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_LEADFLOW_ALERTS_WEBHOOK", json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}/hooks/leadflow", "password": "tok"}))
    yield received
    server.shutdown()
    server.server_close()


def _alert(summary=None, **kwargs):
    return run_alert(CRM, DAG_ID, RUN_ID, summary or {}, run_url="http://airflow.example/dags/x/runs/y", **kwargs)


# --- what a run's alert says --------------------------------------------------------------------
def test_given_a_run_that_went_well_then_there_is_no_alert():
    assert _alert({"pulled": 10, "pushed": 100, "rejected": 5}, status="success", max_rejected_share=0.05) is None


def test_given_a_failed_run_then_the_alert_names_the_task_its_error_the_run_page_and_the_report_command():
    summary = {"pulled": 1200, "quarantined": 400, "errors": ["validate: QualityGateError: quarantine_share 0.33 > 0.2"]}
    message = _alert(summary, status="failed", unfinished={"validate": "failed", "report": "upstream_failed"})

    assert message["kind"] == "failure" and message["reasons"] == ["failed"]
    assert message["title"] == f"leadflow hubspot: run {RUN_ID} failed"
    text = message["text"]
    assert "task(s) validate" in text and "1 task(s) not run" in text
    assert "QualityGateError: quarantine_share 0.33 > 0.2" in text
    assert "http://airflow.example/dags/x/runs/y" in text and "leadflow report --crm hubspot" in text
    assert message["summary"] == {"pulled": 1200, "quarantined": 400}


@pytest.mark.parametrize("rejected, alerts_", [(5, False), (6, True)])
def test_given_the_crm_rejected_more_than_the_threshold_of_the_push_then_the_run_alerts_with_counts_and_ids(
        rejected, alerts_):
    summary = {"pushed": 100 - rejected, "rejected": rejected, "rejected_records": [f"id{i}" for i in range(rejected)]}
    message = _alert(summary, status="success", max_rejected_share=0.05)

    assert (message is not None) is alerts_
    if alerts_:
        assert message["kind"] == "warning" and message["reasons"] == ["rejected_share"]
        assert f"rejected {rejected} of 100 records sent (6.0%, threshold 5.0%)" in message["text"]
        assert "id0, id1" in message["text"]


def test_given_a_run_stopped_for_the_daily_api_budget_then_it_alerts_even_though_it_succeeded():
    message = _alert({"pulled": 300, "budget_stopped": True}, status="warning")
    assert message["reasons"] == ["api_budget"] and "daily API budget" in message["text"]


def test_given_a_failed_run_that_also_had_its_push_rejected_then_both_reasons_go_in_one_alert():
    message = _alert({"pushed": 1, "rejected": 9}, unfinished={"push_1": "failed"}, max_rejected_share=0.05)
    assert message["reasons"] == ["failed", "rejected_share"]
    assert message["title"].endswith("failed (rejected_share)")


def test_given_ignored_handoffs_and_a_rejected_push_in_one_run_then_one_alert_carries_both_with_counts():
    summary = {"pushed": 1, "rejected": 9, "sla_alert": "7 sales-ready leads ignored past the SLA (threshold 5); 40 "
               "handed over in all", "sla": {"handed_over": 40, "ignored": 7, "accepted": 20, "weekly": []}}
    message = _alert(summary, status="success", max_rejected_share=0.05)

    assert message["reasons"] == ["rejected_share", "sla_ignored"] and message["kind"] == "warning"
    assert "SLA: 7 sales-ready leads ignored" in message["text"] and "rejected 9 of 10" in message["text"]
    assert message["sla"] == {"handed_over": 40, "ignored": 7, "accepted": 20}


def test_an_errors_text_is_truncated_and_masks_email_addresses():
    text = alerts.error_text(ValueError("lead ann.lee+x@example.co.uk refused: " + "x" * 1000))
    assert "ann.lee" not in text and "<email>" in text
    assert len(text) == alerts.MAX_ERROR_CHARS and text.startswith("ValueError: lead <email> refused")


# --- channels: the providers' notifiers ----------------------------------------------------------
def test_given_no_alert_connections_then_nothing_is_sent():
    assert send(_alert(status="failed"), lambda _: None) == []


def test_given_a_webhook_connection_then_the_alert_is_posted_as_json_with_the_bearer_token(webhook):
    message = _alert({"pulled": 10}, status="failed", unfinished={"extract": "failed"})

    assert send(message) == ["webhook"]

    assert len(webhook) == 1
    path, auth, body = webhook[0]
    assert path == "/hooks/leadflow" and auth == "Bearer tok"
    assert body["run_id"] == RUN_ID and body["summary"] == {"pulled": 10} and body["reasons"] == ["failed"]


def test_given_a_webhook_that_fails_then_send_logs_and_returns_without_raising(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_LEADFLOW_ALERTS_WEBHOOK", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"}))
    assert send(_alert(status="failed")) == []
    assert "webhook alert failed" in caplog.text


class _FakeSMTP:
    """smtplib.SMTP_SSL as SmtpHook drives it: records the TLS context and the order of calls."""

    calls: list = []

    def __init__(self, host=None, port=None, context=None, timeout=None):
        self.calls.append(("connect", host, port, context))

    def starttls(self, context=None):
        self.calls.append(("starttls", context))

    def ehlo(self):
        pass

    def login(self, user, password):
        self.calls.append(("login", user))

    def sendmail(self, from_addr, to_addrs, msg):
        self.calls.append(("send", from_addr, to_addrs, msg))

    def close(self):
        pass

    def quit(self):
        pass


def _smtp_connection(monkeypatch, **extra):
    monkeypatch.setenv("AIRFLOW_CONN_LEADFLOW_ALERTS_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "smtp.example.com", "port": 465, "login": "alerts", "password": "pw",
         "extra": {"to": "ops@example.com", "from_email": "leadflow@example.com", "disable_tls": True,
                   "retry_limit": 0, **extra}}))


def test_given_an_smtp_connection_then_the_provider_checks_the_certificate_before_logging_in(monkeypatch):
    import ssl

    _FakeSMTP.calls = []
    monkeypatch.setattr("smtplib.SMTP_SSL", _FakeSMTP)
    _smtp_connection(monkeypatch)

    assert send(_alert(status="failed", unfinished={"extract": "failed"})) == ["smtp"]

    kinds = [c[0] for c in _FakeSMTP.calls]
    assert kinds == ["connect", "login", "send"]
    context = _FakeSMTP.calls[0][3]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    _, sender, recipients, mime = _FakeSMTP.calls[2]
    assert sender == "leadflow@example.com" and recipients == ["ops@example.com"]
    assert f"run {RUN_ID} failed" in mime


@pytest.mark.parametrize("extra", [{"ssl_context": "none"}, {"disable_ssl": True, "disable_tls": True}])
def test_given_an_smtp_connection_without_a_checked_tls_then_no_password_is_sent(monkeypatch, extra, caplog):
    _FakeSMTP.calls = []
    monkeypatch.setattr("smtplib.SMTP_SSL", _FakeSMTP)
    monkeypatch.setattr("smtplib.SMTP", _FakeSMTP)
    _smtp_connection(monkeypatch, **extra)

    assert send(_alert(status="failed")) == []
    assert _FakeSMTP.calls == [] and "e-mail alert failed" in caplog.text


def test_the_run_link_points_at_the_airflow_ui_of_the_configured_api_base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert airflow_adapter.run_url(DAG_ID, "manual__2026-11-24T03:50:12+00:00") == \
        "https://airflow.example.com/dags/leadflow_hubspot/runs/manual__2026-11-24T03%3A50%3A12%2B00%3A00"


# --- the teardown and the failure callback -------------------------------------------------------
class _TaskInstance:
    def __init__(self, task_id="close_run", map_index=-1, states=None):
        self.task_id, self.map_index, self.states = task_id, map_index, states or {}

    def get_task_states(self, dag_id, run_ids):
        assert dag_id == DAG_ID
        return {run_ids[0]: dict(self.states)}


def _context(states=None, task_id="close_run", map_index=-1, exception=None):
    return {"dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID, run_after=datetime(2026, 11, 24, 2, tzinfo=timezone.utc)),
            "params": {}, "ti": _TaskInstance(task_id, map_index, states), "exception": exception}


@pytest.fixture
def warehouse_env(env_warehouse, monkeypatch):
    # The pipeline imported first: a module importing get_engine while it is replaced would keep
    # this test's engine for every later test of the session.
    import leadflow.pipeline  # noqa: F401

    monkeypatch.setattr("leadflow.warehouse.db.get_engine", lambda *a, **k: env_warehouse)
    return env_warehouse


def _close(monkeypatch, states):
    monkeypatch.setattr(airflow_adapter, "current_context", lambda: _context(states))
    return dag_support.close_run(CRM)


def _fail_task(monkeypatch, task_id, error, states=None, map_index=-1):
    """A task's final failure as Airflow reports it: the exception fail_without_retry raised, then
    the task's on_failure_callback."""
    try:
        with dag_support.fail_without_retry():
            raise error
    except Exception as raised:
        exception = raised
    callback = dag_support.crm_default_args()["on_failure_callback"]
    callback(_context(states, task_id=task_id, map_index=map_index, exception=exception))
    return exception


def test_given_the_quality_gate_fails_then_the_run_is_recorded_failed_and_exactly_one_alert_goes_out(
        warehouse_env, webhook, monkeypatch):
    from leadflow.quality.results import CheckResult, QualityGateError

    repo.start_run(warehouse_env, CRM, RUN_ID, dry_run=False)
    repo.record_step(warehouse_env, CRM, RUN_ID, "extract", {"pulled": 1200})
    gate = QualityGateError([CheckResult(stage="batch", name="quarantine_share", success=False, observed="0.4",
                                         threshold="<= 0.2")])
    raised = _fail_task(monkeypatch, "validate", gate)
    assert isinstance(raised, AirflowFailException)  # no retries
    assert webhook == []  # the failing task's callback records, it does not alert

    states = {"extract": "success", "enrich": "success", "validate": "failed", "shard_list": "upstream_failed",
              "report": "upstream_failed"}
    out = _close(monkeypatch, states)

    assert out["status"] == "failed" and out["alerted"] == ["webhook"]
    run = repo.latest_runs(warehouse_env, CRM)[0]
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["summary"]["failed_tasks"] == ["validate"] and run["summary"]["pulled"] == 1200
    assert len(webhook) == 1
    body = webhook[0][2]
    assert body["reasons"] == ["failed"] and "quarantine_share" in body["text"] and "validate" in body["text"]


def test_given_a_run_whose_report_never_ran_then_the_teardown_does_not_leave_it_running(warehouse_env, monkeypatch):
    sent = []
    monkeypatch.setattr(alerts, "send", lambda message, context=None: sent.append(message) or ["webhook"])
    repo.start_run(warehouse_env, CRM, RUN_ID, dry_run=False)

    out = _close(monkeypatch, {})  # every task "succeeded" (marked so by hand), yet nothing closed the run

    assert out["status"] == "failed" and repo.run_status(warehouse_env, CRM, RUN_ID) == "failed"
    assert len(sent) == 1


def test_given_a_run_that_failed_before_it_was_recorded_then_the_teardown_records_it_failed(warehouse_env, monkeypatch):
    monkeypatch.setattr(alerts, "send", lambda message, context=None: ["webhook"])
    _close(monkeypatch, {"extract": "failed", "report": "upstream_failed"})
    assert repo.run_status(warehouse_env, CRM, RUN_ID) == "failed"


def test_given_a_run_report_closed_then_the_teardown_keeps_its_status_and_sends_nothing(warehouse_env, monkeypatch):
    sent = []
    monkeypatch.setattr(alerts, "send", lambda message, context=None: sent.append(message) or [])
    repo.start_run(warehouse_env, CRM, RUN_ID, dry_run=False)
    repo.record_step(warehouse_env, CRM, RUN_ID, "push", {"pushed": 100, "rejected": 1})
    repo.finish_run(warehouse_env, CRM, RUN_ID, "success")

    assert _close(monkeypatch, {"report": "success"})["status"] == "success"
    assert repo.run_status(warehouse_env, CRM, RUN_ID) == "success" and sent == []


def test_given_a_run_report_closed_with_ignored_handoffs_and_a_rejected_push_then_the_teardown_sends_one_alert(
        warehouse_env, monkeypatch):
    sent = []
    monkeypatch.setattr(alerts, "send", lambda message, context=None: sent.append(message) or ["webhook"])
    repo.start_run(warehouse_env, CRM, RUN_ID, dry_run=False)
    repo.record_step(warehouse_env, CRM, RUN_ID, "push", {"pushed": 80, "rejected": 20})
    repo.record_step(warehouse_env, CRM, RUN_ID, "sla", {"sla": {"ignored": 9, "handed_over": 30},
                                                         "sla_alert": "9 sales-ready leads ignored past the SLA"})
    repo.finish_run(warehouse_env, CRM, RUN_ID, "success")

    assert _close(monkeypatch, {"report": "success"})["reasons"] == ["rejected_share", "sla_ignored"]
    assert len(sent) == 1 and repo.run_status(warehouse_env, CRM, RUN_ID) == "success"


def test_given_a_push_shard_stopped_for_the_daily_budget_then_it_fails_without_retry_and_the_alert_says_why(
        warehouse_env, monkeypatch):
    from leadflow.crm.base import CrmBudgetExhausted

    sent = []
    monkeypatch.setattr(alerts, "send", lambda message, context=None: sent.append(message) or ["webhook"])
    repo.start_run(warehouse_env, CRM, RUN_ID, dry_run=False)
    raised = _fail_task(monkeypatch, "push", CrmBudgetExhausted("HubSpot's daily API limit is spent"), map_index=1)
    assert isinstance(raised, AirflowFailException)

    _close(monkeypatch, {"push_1": "failed", "push_accounts": "upstream_failed", "report": "upstream_failed"})

    assert [m["reasons"] for m in sent] == [["failed", "api_budget"]]
    assert "push[1]: CrmBudgetExhausted" in sent[0]["text"]


def test_a_database_errors_text_with_a_bound_email_does_not_reach_the_alert(warehouse_env, monkeypatch, new_pg_database):
    """A real PostgreSQL error: its driver message quotes the row (DETAIL: Key (email, name)=(...)),
    and the statement's parameters would follow it without hide_parameters."""
    from sqlalchemy import text

    sent = []
    monkeypatch.setattr(alerts, "send", lambda message, context=None: sent.append(message) or ["webhook"])
    pg = warehouse_engine(new_pg_database())  # the project's engine: parameters hidden
    with pg.begin() as conn:
        conn.execute(text("CREATE TABLE people (email text, name text, UNIQUE (email, name))"))
        conn.execute(text("INSERT INTO people VALUES (:email, :name)"), {"email": "ann@example.com", "name": "Ann Lee"})
    try:
        with pg.begin() as conn:
            conn.execute(text("INSERT INTO people VALUES (:email, :name)"), {"email": "ann@example.com", "name": "Ann Lee"})
    except Exception as exc:
        db_error = exc
    finally:
        pg.dispose()
    assert "ann@example.com, Ann Lee" in str(db_error.orig)  # the driver's text does carry the values
    repo.start_run(warehouse_env, CRM, RUN_ID, dry_run=False)

    _fail_task(monkeypatch, "extract", db_error)
    _close(monkeypatch, {"extract": "failed", "report": "upstream_failed"})

    (message,) = sent
    assert "ann@example.com" not in json.dumps(message) and "Ann Lee" not in json.dumps(message)
    assert "IntegrityError (psycopg.UniqueViolation) SQLSTATE 23505" in message["text"]
    assert "Ann Lee" not in json.dumps(repo.latest_runs(warehouse_env, CRM)[0]["summary"])


# --- DAG params as a RunContext --------------------------------------------------------------------
def test_params_become_run_context_with_rate_share_per_shard():
    dag_run = SimpleNamespace(run_id="manual__1", run_after=datetime(2026, 11, 24, 3, tzinfo=timezone.utc))
    params = {"dry_run": True, "push": False, "only_record_ids": ["7", 8], "since": "2026-11-01", "force": True}
    ctx = run_context("hubspot", dag_run, params, shard=2, shards=4)
    assert (ctx.dry_run, ctx.push_enabled, ctx.force) == (True, False, True)
    assert ctx.only_record_ids == ["7", "8"] and ctx.since == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert (ctx.shard, ctx.shards, ctx.rate_share) == (2, 4, 0.25)
    assert ctx.now >= dag_run.run_after  # a late start uses the wall clock


def test_given_scheduled_run_starting_late_then_now_is_the_wall_clock():
    early = datetime.now(timezone.utc) - timedelta(hours=5)
    ctx = run_context("hubspot", SimpleNamespace(run_id="scheduled__1", run_after=early), {})
    assert ctx.now - early > timedelta(hours=4)


def test_given_a_run_crossing_midnight_then_its_tasks_score_as_of_the_day_it_started():
    started = datetime(2026, 11, 24, 23, 58, tzinfo=timezone.utc)
    dag_run = SimpleNamespace(run_id="scheduled__1", run_after=started - timedelta(minutes=1), start_date=started)
    with time_machine.travel(started + timedelta(seconds=30), tick=False):
        early = run_context("hubspot", dag_run, {})
    with time_machine.travel(started + timedelta(minutes=5), tick=False):  # a later task, the next day
        late = run_context("hubspot", dag_run, {})
    assert (early.now.date(), late.now.date()) == (date(2026, 11, 24), date(2026, 11, 25))
    assert early.score_as_of == late.score_as_of == datetime(2026, 11, 24, tzinfo=timezone.utc)


def test_given_a_run_after_later_than_its_start_then_scores_are_as_of_run_after():
    run_after = datetime(2026, 11, 25, 0, 1, tzinfo=timezone.utc)
    dag_run = SimpleNamespace(run_id="manual__1", run_after=run_after, start_date=run_after - timedelta(minutes=2))
    with time_machine.travel(run_after + timedelta(minutes=1), tick=False):
        assert run_context("hubspot", dag_run, {}).score_as_of == datetime(2026, 11, 25, tzinfo=timezone.utc)


@pytest.mark.parametrize("params, shards", [({}, 1), ({"shards": None}, 1), ({"shards": 4}, 4), ({"shards": "3"}, 3)])
def test_the_shards_param_is_read_in_one_place(params, shards):
    assert dag_support.shard_count(params) == shards


# --- `leadflow run`: the run's one alert without Airflow's teardown ---------------------------------
def _steps(monkeypatch, **steps):
    """Every pipeline step of `leadflow run` replaced by one that records nothing, `extract` by one
    that records the run (as the real one does first), and `steps` by the given ones."""
    from leadflow import pipeline

    def extract(ctx):
        repo.start_run(ctx.engine, ctx.crm, ctx.run_id, ctx.dry_run)
        repo.record_step(ctx.engine, ctx.crm, ctx.run_id, "extract", {"pulled": 120})
        return {"pulled": 120}

    for name in pipeline.STEPS:
        monkeypatch.setattr(pipeline, name, steps.get(name, extract if name == "extract" else lambda ctx: {}))


def test_given_leadflow_run_fails_at_a_step_then_the_run_is_recorded_failed_and_exactly_one_alert_goes_out(
        env_warehouse, monkeypatch, webhook):
    from leadflow import cli
    from leadflow.quality.results import CheckResult, QualityGateError

    def gate(ctx):
        raise QualityGateError([CheckResult("batch", "quarantine_share", False, "0.2 (12 of 60 rows)", "<= 0.05")])

    _steps(monkeypatch, validate_gate=gate)

    assert cli.main(["run", "--crm", CRM, "--run-id", "cli-gate"]) == 1

    assert len(webhook) == 1
    body = webhook[0][2]
    assert body["run_id"] == "cli-gate" and body["reasons"] == ["failed"]
    assert body["unfinished_tasks"] == {"validate_gate": "failed"} and body["summary"] == {"pulled": 120}
    assert "validate_gate: QualityGateError: data quality gate failed (1 check(s)): batch/quarantine_share: " \
           "observed 0.2 (12 of 60 rows)" in body["text"]
    run = repo.latest_runs(env_warehouse, CRM)[0]
    assert run["status"] == "failed" and run["summary"]["failed_tasks"] == ["validate_gate"]


def test_given_leadflow_run_succeeds_with_a_rejected_push_and_ignored_handoffs_then_one_alert_carries_both(
        env_warehouse, monkeypatch, webhook):
    from leadflow import cli

    def push(ctx):
        repo.record_step(ctx.engine, ctx.crm, ctx.run_id, "push", {"pushed": 1, "rejected": 9})
        return {}

    monkeypatch.setattr("leadflow.pipeline.ignored_alert", lambda figures, threshold: "3 sales-ready leads ignored")
    _steps(monkeypatch, push=push)

    assert cli.main(["run", "--crm", CRM, "--run-id", "cli-rejected"]) == 0

    assert [body["reasons"] for _, _, body in webhook] == [["rejected_share", "sla_ignored"]]


def test_given_leadflow_run_went_well_then_it_sends_nothing(env_warehouse, monkeypatch, webhook):
    from leadflow import cli

    _steps(monkeypatch)

    assert cli.main(["run", "--crm", CRM, "--run-id", "cli-ok"]) == 0
    assert webhook == []


# --- the maintenance DAGs' teardown --------------------------------------------------------------
class _MaintenanceTaskInstance(_TaskInstance):
    """A task instance that keeps XComs as the Task SDK's does (per task id and key)."""

    xcoms: dict = {}

    def get_task_states(self, dag_id, run_ids):
        return {run_ids[0]: dict(self.states)}

    def xcom_push(self, key, value):
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids, key):
        return self.xcoms.get((task_ids, key))


def _maintenance_context(dag_id, states=None, task_id="close_run", params=None, exception=None):
    return {"dag_run": SimpleNamespace(dag_id=dag_id, run_id="manual__r1"), "params": params or {},
            "ti": _MaintenanceTaskInstance(task_id, -1, states), "exception": exception}


@pytest.fixture
def maintenance(monkeypatch):
    """Sent messages; `run(dag_id, states, params)` runs the teardown in such a run."""
    sent = []
    _MaintenanceTaskInstance.xcoms = {}
    monkeypatch.setattr(alerts, "send", lambda message, context=None: sent.append(message) or ["webhook"])

    def run(dag_id, states, params=None):
        monkeypatch.setattr(airflow_adapter, "current_context",
                            lambda: _maintenance_context(dag_id, states, params=params))
        return dag_support.close_maintenance_run()

    run.sent = sent
    return run


def test_given_a_rollback_that_failed_then_its_teardown_sends_one_alert_with_the_error_and_no_report_command(
        maintenance, monkeypatch):
    from leadflow.crm.base import CrmAuthError

    try:
        with dag_support.fail_without_retry():
            raise CrmAuthError("HubSpot rejected the token (401) for ann@example.com")
    except AirflowFailException as raised:
        failure = raised
    callback = dag_support.maintenance_default_args()["on_failure_callback"]
    callback(_maintenance_context("leadflow_rollback", task_id="rollback_hubspot", exception=failure))

    out = maintenance("leadflow_rollback", {"rollback_hubspot": "failed", "rollback_salesforce": "skipped"},
                      params={"crm": "hubspot", "run_id": "manual__old", "dry_run": False})

    assert out["alerted"] == ["webhook"]
    (message,) = maintenance.sent
    assert message["title"] == "leadflow rollback hubspot: run manual__r1 failed"
    assert message["dag_id"] == "leadflow_rollback" and message["unfinished_tasks"] == {"rollback_hubspot": "failed"}
    assert message["errors"] == ["rollback_hubspot: CrmAuthError: HubSpot rejected the token (401) for <email>"]
    assert message["report_command"] is None and "leadflow report" not in message["text"]
    assert "/dags/leadflow_rollback/runs/manual__r1" in message["airflow_url"]


def test_given_a_training_run_with_two_failed_tasks_then_its_teardown_sends_exactly_one_alert(maintenance):
    maintenance("leadflow_train", {"train_hubspot": "failed", "train_salesforce": "failed"})

    (message,) = maintenance.sent
    assert message["title"] == "leadflow train: run manual__r1 failed" and message["crm"] is None
    assert "task(s) train_hubspot, train_salesforce" in message["text"]
    assert message["errors"] == [f"train_{crm}: no error recorded (see the task log)" for crm in ("hubspot", "salesforce")]


def test_given_a_maintenance_run_that_went_well_then_its_teardown_sends_nothing(maintenance):
    out = maintenance("leadflow_train", {"train_hubspot": "success", "train_salesforce": "success"})
    assert out["status"] == "success" and maintenance.sent == []
