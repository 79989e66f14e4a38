"""Failure and data-quality alerts: e-mail (SMTP) and a generic JSON webhook, each configured by
an Airflow connection (found through `leadflow.connections`, i.e. Airflow's lookup) and silent
when that connection does not exist.

Connections: `leadflow_alerts_smtp` (host, port, login, password; extra `{"to": "a@b,c@d",
"from": "leadflow@..."}`) and `leadflow_alerts_webhook` (the URL as host/schema/port/path in
extra `{"path": "/hooks/..."}`; the password, if any, is sent as a bearer token).
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, Callable

import requests

log = logging.getLogger(__name__)

SMTP_CONN = "leadflow_alerts_smtp"
WEBHOOK_CONN = "leadflow_alerts_webhook"


def _airflow_connection(conn_id: str) -> Any | None:
    from leadflow.connections import ConnectionConfigError, find_connection

    try:
        return find_connection(conn_id)
    except ConnectionConfigError as exc:  # malformed: say so, but an alert must not raise
        log.warning("alert channel %s skipped: %s", conn_id, exc)
        return None
    except Exception as exc:  # the lookup itself failed (e.g. the API server is unreachable)
        log.warning("alert channel %s skipped: lookup failed (%s)", conn_id, type(exc).__name__)
        return None


def build_message(kind: str, dag_id: str, run_id: str, task_id: str | None, error: str | None,
                  summary: dict[str, Any]) -> dict[str, Any]:
    counts = {k: summary.get(k) for k in ("pulled", "quarantined", "scored", "changed", "pushed", "rejected")
              if k in summary}
    title = f"leadflow {kind}: {dag_id} run {run_id}" + (f" task {task_id}" if task_id else "")
    lines = [title, "", f"error: {error or '-'}", "summary: " + json.dumps(counts, sort_keys=True)]
    return {"title": title, "text": "\n".join(lines), "kind": kind, "dag_id": dag_id, "run_id": run_id,
            "task_id": task_id, "error": error, "summary": counts}


def send(message: dict[str, Any], get_connection: Callable[[str], Any | None] = _airflow_connection) -> list[str]:
    """Send to every configured channel; return the channels used. Never raises."""
    sent = []
    hook = get_connection(WEBHOOK_CONN)
    if hook is not None:
        try:
            extra = getattr(hook, "extra_dejson", {}) or {}
            scheme = hook.schema or "https"
            port = f":{hook.port}" if hook.port else ""
            url = f"{scheme}://{hook.host}{port}{extra.get('path', '')}"
            headers = {"Authorization": f"Bearer {hook.password}"} if hook.password else {}
            requests.post(url, json=message, headers=headers, timeout=10).raise_for_status()
            sent.append("webhook")
        except Exception as exc:  # an alert must not hide the failure it reports
            log.warning("webhook alert failed: %s", type(exc).__name__)
    smtp = get_connection(SMTP_CONN)
    if smtp is not None:
        try:
            extra = getattr(smtp, "extra_dejson", {}) or {}
            mail = EmailMessage()
            mail["Subject"] = message["title"]
            mail["From"] = extra.get("from", "leadflow@localhost")
            mail["To"] = extra.get("to", "")
            mail.set_content(message["text"])
            with smtplib.SMTP(smtp.host, smtp.port or 25, timeout=10) as client:
                if smtp.login:
                    # Verify the server's certificate before the password crosses the wire.
                    client.starttls(context=ssl.create_default_context())
                    client.login(smtp.login, smtp.password or "")
                client.send_message(mail)
            sent.append("smtp")
        except Exception as exc:
            log.warning("e-mail alert failed: %s", type(exc).__name__)
    return sent


def notify_failure(context: dict[str, Any], kind: str) -> list[str]:
    """Airflow failure callback: the run's summary so far in the message."""
    dag_run = context.get("dag_run")
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(dag_run, "dag_id", "?")
    run_id = getattr(dag_run, "run_id", "?")
    crm = dag_id.removeprefix("leadflow_")
    summary: dict[str, Any] = {}
    try:
        from leadflow.warehouse import repo
        from leadflow.warehouse.db import ensure_schema, get_engine

        engine = get_engine()
        ensure_schema(engine)
        summary = repo.get_run_summary(engine, crm, run_id)
    except Exception:
        log.warning("alert without summary: warehouse not reachable")
    error = context.get("exception")
    message = build_message(kind, dag_id, run_id, getattr(ti, "task_id", None),
                            str(error)[:2000] if error else None, summary)
    return send(message)
