"""Alerts: at most one per run, sent once the run has ended — by the CRM DAG's teardown task
(`leadflow.dag_support.close_run`), by `leadflow run` (`leadflow.pipeline.run_all`) — when the run
failed, when the CRM rejected more of the push than `alerts.max_rejected_share`, when the run
stopped for the CRM's daily API budget, or when more sales-ready leads sit ignored past the SLA
than `handoff.alert_ignored_over` (the `report` step records that as `sla_alert`); reasons that come
together go in one message. The maintenance DAGs (`leadflow_train`, `leadflow_rollback`) send one
from their teardown too (`leadflow.dag_support.close_maintenance_run`) when a task failed.

Channels are Airflow connections, each optional (no connection, no alert on it), sent through the
Airflow providers' notifiers (`leadflow.airflow_adapter`):
- `leadflow_alerts_webhook` (conn type http): the URL as host (or host, schema, port); a password
  without a login is sent as a bearer token; the message is POSTed as JSON.
- `leadflow_alerts_smtp` (conn type smtp): the smtp provider's connection (extra `from_email`,
  `disable_ssl`/`disable_tls`, `timeout`) plus leadflow's `to` (comma-separated addresses).

A message carries counts and ids, never row values: an error's text is truncated, a database
error is reduced to its class names (a driver's message can quote the row), and anything shaped
like an e-mail address is masked.
"""

from __future__ import annotations

import html
import json
import logging
import re
from typing import Any, Callable, Mapping

from sqlalchemy.exc import StatementError

from leadflow import airflow_adapter

log = logging.getLogger(__name__)

SMTP_CONN = "leadflow_alerts_smtp"
WEBHOOK_CONN = "leadflow_alerts_webhook"
MAX_ERROR_CHARS = 500
MAX_IDS = 10
COUNT_KEYS = ("pulled", "quarantined", "scored", "changed", "pushed", "rejected", "failed", "unknown")
SLA_COUNT_KEYS = ("handed_over", "accepted", "converted", "rejected", "ignored", "pending")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


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


def error_text(exc: BaseException | None) -> str | None:
    """What an alert (and the run's summary) says about a failure: type and message, without
    values. A database error anywhere in the chain gives only its class names and SQLSTATE."""
    if exc is None:
        return None
    cause = exc.__cause__
    if cause is not None and str(exc) == f"{type(cause).__name__}: {cause}":
        exc = cause  # a wrapper that only repeats its cause (a task failed without retries)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StatementError):
            orig = getattr(seen, "orig", None)
            code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
            driver = f" ({type(orig).__module__.split('.')[0]}.{type(orig).__name__})" if orig is not None else ""
            return (f"{type(seen).__name__}{driver}" + (f" SQLSTATE {code}" if code else "")
                    + ": database error, its text is kept out of alerts (see the task's log)")
        seen = seen.__cause__ or seen.__context__
    text = _EMAIL.sub("<email>", f"{type(exc).__name__}: {exc}")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def rejected_share(summary: Mapping[str, Any]) -> float | None:
    """Records the CRM rejected among those the push sent (confirmed + rejected); None without a push."""
    pushed, rejected = int(summary.get("pushed") or 0), int(summary.get("rejected") or 0)
    return rejected / (pushed + rejected) if pushed + rejected else None


def run_alert(crm: str | None, dag_id: str, run_id: str, summary: Mapping[str, Any], *, status: str | None = None,
              unfinished: Mapping[str, str] | None = None, max_rejected_share: float = 1.0,
              run_url: str | None = None) -> dict[str, Any] | None:
    """The run's one alert, or None when nothing calls for one. `summary`: the run's figures so
    far; `status`: the warehouse's; `unfinished`: the tasks that failed or never ran for a failed
    upstream ({task: state}). A run of another DAG than the CRM's (`leadflow_train`, `leadflow_rollback`:
    `crm` None or the CRM it worked on) is named by its DAG and has no `leadflow report`."""
    unfinished = dict(unfinished or {})
    failed = bool(unfinished) or status == "failed"
    share = rejected_share(summary)
    too_many_rejected = share is not None and share > max_rejected_share
    budget = bool(summary.get("budget_stopped"))
    sla = summary.get("sla_alert")
    if not (failed or too_many_rejected or budget or sla):
        return None
    reasons, lines = [], []
    if failed:
        reasons.append("failed")
        failed_tasks = [t for t, state in unfinished.items() if state == "failed"] or list(summary.get("failed_tasks") or [])
        lines.append(f"failed: task(s) {', '.join(failed_tasks) or '?'}"
                     + (f"; {len(unfinished) - len(failed_tasks)} task(s) not run" if len(unfinished) > len(failed_tasks)
                        else ""))
        lines += [f"error: {error}" for error in list(summary.get("errors") or [])[:MAX_IDS]]
    if budget:
        reasons.append("api_budget")
        lines.append("stopped for the CRM's daily API budget: the next run resumes where this one stopped")
    if too_many_rejected:
        reasons.append("rejected_share")
        ids = list(summary.get("rejected_records") or [])
        sent = int(summary.get("pushed") or 0) + int(summary.get("rejected") or 0)
        lines.append(f"rejected: the CRM rejected {summary.get('rejected')} of {sent} records sent "
                     f"({share:.1%}, threshold {max_rejected_share:.1%})")
        if ids:
            lines.append(f"rejected record ids: {', '.join(map(str, ids[:MAX_IDS]))}" + (" …" if len(ids) > MAX_IDS else ""))
    sla_counts = None
    if sla:
        reasons.append("sla_ignored")
        lines.append(f"SLA: {sla}")
        figures = summary.get("sla") if isinstance(summary.get("sla"), Mapping) else {}
        sla_counts = {k: figures[k] for k in SLA_COUNT_KEYS if isinstance(figures.get(k), (int, float))}
    counts = {k: summary[k] for k in COUNT_KEYS if isinstance(summary.get(k), (int, float))}
    crm_run = crm is not None and dag_id == f"leadflow_{crm}"
    report_command = f"leadflow report --crm {crm}" if crm_run else None
    name = crm if crm_run else " ".join([dag_id.removeprefix("leadflow_"), *([crm] if crm else [])])
    others = [r for r in reasons if r != "failed"]
    title = f"leadflow {name}: run {run_id} {'failed' if failed else 'needs a look'}" + \
        (f" ({', '.join(others)})" if others else "")
    if counts or crm_run:
        lines.append(f"counts: {json.dumps(counts, sort_keys=True)}")
    if run_url:
        lines.append(f"Airflow: {run_url}")
    if report_command:
        lines.append(f"report: {report_command}")
    text = "\n".join([title, "", *lines])
    return {"title": title, "text": text, "kind": "failure" if failed else "warning", "reasons": reasons,
            "crm": crm, "dag_id": dag_id, "run_id": run_id, "summary": counts, "unfinished_tasks": unfinished,
            "errors": list(summary.get("errors") or [])[:MAX_IDS], "airflow_url": run_url,
            "report_command": report_command, **({"sla": sla_counts} if sla_counts is not None else {})}


def alert_run(crm: str | None, dag_id: str | None, run_id: str, summary: Mapping[str, Any], *,
              context: Mapping[str, Any] | None = None, **kwargs: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The run's one alert (`run_alert`, with `kwargs`) sent to every configured channel, and
    logged: (the message or None, the channels used). Never raises."""
    message = run_alert(crm, dag_id or f"leadflow_{crm}", run_id, summary, **kwargs)  # the CLI's run: no DAG
    if message is None:
        return None, []
    channels = send(message, context=context)
    log.warning("%s (%s); alert sent to %s", message["title"], ", ".join(message["reasons"]),
                ", ".join(channels) or "no channel (none configured)")
    return message, channels


def send(message: Mapping[str, Any], get_connection: Callable[[str], Any | None] = _airflow_connection,
         context: Mapping[str, Any] | None = None) -> list[str]:
    """Send to every configured channel; return the channels used. Never raises: an alert must
    not hide the failure it reports."""
    sent: list[str] = []
    if get_connection(WEBHOOK_CONN) is not None:
        try:
            airflow_adapter.post_webhook(WEBHOOK_CONN, message, context)
            sent.append("webhook")
        except Exception as exc:
            log.warning("webhook alert failed: %s", error_text(exc))
    smtp = get_connection(SMTP_CONN)
    if smtp is not None:
        extra = getattr(smtp, "extra", None) or getattr(smtp, "extra_dejson", None) or {}
        try:
            airflow_adapter.send_email(SMTP_CONN, to=str(extra.get("to", "")),
                                       from_email=extra.get("from_email") or extra.get("from"),
                                       subject=str(message["title"]), html=_html(str(message["text"])),
                                       context=context)
            sent.append("smtp")
        except Exception as exc:
            log.warning("e-mail alert failed: %s", error_text(exc))
    return sent


def _html(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
