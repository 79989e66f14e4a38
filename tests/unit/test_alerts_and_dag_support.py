"""Alerts go to the configured channels only; DAG params become a RunContext."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

from leadflow.alerts import WEBHOOK_CONN, build_message, send
from leadflow.dag_support import run_context


def test_given_no_alert_connections_then_nothing_is_sent():
    assert send(build_message("failure", "leadflow_hubspot", "r1", "push", "boom", {}), lambda _: None) == []


def test_given_webhook_connection_then_message_with_summary_is_posted():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers["Authorization"], json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    conn = SimpleNamespace(host="127.0.0.1", port=server.server_port, schema="http", password="tok",
                           extra_dejson={"path": "/hook"})
    message = build_message("data quality gate", "leadflow_hubspot", "r1", "validate", "share too high",
                            {"pulled": 10, "quarantined": 4, "secret": "x"})
    assert send(message, lambda cid: conn if cid == WEBHOOK_CONN else None) == ["webhook"]
    thread.join(5)
    auth, body = received[0]
    assert auth == "Bearer tok"
    assert body["summary"] == {"pulled": 10, "quarantined": 4} and "share too high" in body["text"]


def test_params_become_run_context_with_rate_share_per_shard():
    dag_run = SimpleNamespace(run_id="manual__1", run_after=datetime(2026, 11, 24, 3, tzinfo=timezone.utc))
    params = {"dry_run": True, "push": False, "only_record_ids": ["7", 8], "since": "2026-11-01", "force": True}
    ctx = run_context("hubspot", dag_run, params, shard=2, shards=4)
    assert (ctx.dry_run, ctx.push_enabled, ctx.force) == (True, False, True)
    assert ctx.only_record_ids == ["7", "8"] and ctx.since == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert (ctx.shard, ctx.shards, ctx.rate_share) == (2, 4, 0.25)
    assert ctx.now >= dag_run.run_after  # a late start uses the wall clock


def test_given_scheduled_run_starting_late_then_now_is_the_wall_clock():
    from datetime import timedelta

    early = datetime.now(timezone.utc) - timedelta(hours=5)
    ctx = run_context("hubspot", SimpleNamespace(run_id="scheduled__1", run_after=early), {})
    assert ctx.now - early > timedelta(hours=4)


def test_given_a_dag_run_fails_then_the_warehouse_records_it_failed_and_the_alert_goes_out(tmp_path, monkeypatch):
    from leadflow import dag_support
    from leadflow.warehouse import repo
    from leadflow.warehouse.db import ensure_schema, get_engine

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", url)
    engine = get_engine(url)
    ensure_schema(engine)
    repo.start_run(engine, "hubspot", "scheduled__1", dry_run=False)
    alerts = []
    monkeypatch.setattr("leadflow.alerts.notify_failure", lambda context, kind: alerts.append(kind))
    monkeypatch.setattr("leadflow.warehouse.db.get_engine", lambda *a, **k: engine)

    dag_support.on_run_failure({"dag_run": SimpleNamespace(dag_id="leadflow_hubspot", run_id="scheduled__1")})

    assert repo.latest_runs(engine, "hubspot")[0]["status"] == "failed"
    assert alerts == ["failure"]


def test_given_an_smtp_login_then_starttls_verifies_the_server_certificate_before_logging_in(monkeypatch):
    import ssl

    from leadflow.alerts import SMTP_CONN

    calls = []

    class FakeSMTP:
        def __init__(self, host, port, timeout):
            calls.append(("connect", host, port))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def starttls(self, context=None):
            calls.append(("starttls", context))

        def login(self, user, password):
            calls.append(("login", user))

        def send_message(self, mail):
            calls.append(("send", mail["To"]))

    monkeypatch.setattr("smtplib.SMTP", FakeSMTP)
    conn = SimpleNamespace(host="smtp.example.com", port=587, login="alerts", password="pw",
                           extra_dejson={"to": "ops@example.com"})
    sent = send(build_message("failure", "leadflow_hubspot", "r1", "push", "boom", {}),
                lambda cid: conn if cid == SMTP_CONN else None)

    assert sent == ["smtp"]
    kinds = [c[0] for c in calls]
    assert kinds == ["connect", "starttls", "login", "send"]
    context = calls[1][1]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
