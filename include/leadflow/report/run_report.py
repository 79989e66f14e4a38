"""The run report: summary, data-quality checks, stage transitions, charts, the SLA and the account
view (in counts) of one run."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from leadflow.schema import stage_sort_key
from leadflow.views import charts, queries
from leadflow.views.paths import report_path, reports_dir
from leadflow.views.render import render

log = logging.getLogger(__name__)

# Summary keys shown elsewhere in the report (not repeated in the "other figures" table).
_SHOWN = {*queries.RUN_COUNT_KEYS, "preview", "proposed_stages", "durations_s", "sla", "sla_alert", "accounts"}


def default_report_folder() -> Path:
    """`LEADFLOW_REPORTS_DIR`, else `<LEADFLOW_VAR_DIR>/reports`."""
    return reports_dir()


def _run_row(engine: Engine, crm: str, run_id: str) -> dict[str, Any] | None:
    from leadflow.warehouse.tables import runs

    with engine.connect() as conn:
        row = conn.execute(
            select(runs).where(runs.c.crm == crm, runs.c.run_id == run_id)
        ).mappings().first()
    if row is None:
        return None
    item = dict(row)
    try:
        item["summary"] = json.loads(item["summary"] or "{}")
    except ValueError:
        item["summary"] = {}
    item["counts"] = queries._run_counts(item["summary"])
    return item


def _scored_in_run(engine: Engine, crm: str, run_id: str) -> bool:
    grades = queries.grade_matrix(engine, crm, run_id)
    return grades["total"] > 0


def render_run_report(engine: Engine, crm: str, run_id: str) -> str:
    """The report as an HTML string (raises LookupError for an unknown run)."""
    run = _run_row(engine, crm, run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} for CRM {crm!r}")
    summary = run["summary"]
    # Scores hold the current score per record, stamped with the run that computed it: for the
    # newest run that is every open lead; an older run's report falls back to the current scores.
    own_scores = _scored_in_run(engine, crm, run_id)
    score_run = run_id if own_scores else None
    histogram = queries.score_histogram(engine, crm, score_run)
    grades = queries.grade_matrix(engine, crm, score_run)
    stages = {str(k): int(v) for k, v in (summary.get("proposed_stages") or {}).items()}
    stages = dict(sorted(stages.items(), key=lambda kv: stage_sort_key(kv[0])))
    preview = summary.get("preview") if isinstance(summary.get("preview"), dict) else None
    if preview is not None:
        preview = {"run_id": run_id, "dry_run": bool(run["dry_run"]), **preview}
    transitions = (preview or {}).get("stage_transitions") or {}
    other = {k: v for k, v in sorted(summary.items()) if k not in _SHOWN}
    duration = None
    if run["finished_at"] and run["started_at"]:
        duration = round((run["finished_at"] - run["started_at"]) / 1000.0, 1)
    html = render(
        "report.html.j2",
        crm=crm,
        run=run,
        duration=duration,
        count_keys=queries.RUN_COUNT_KEYS,
        durations=summary.get("durations_s") or {},
        dq=queries.dq_results_for_run(engine, crm, run_id),
        preview=preview,
        push_status=queries.push_status_counts(engine, crm, run_id),
        overrides=queries.overrides(engine, crm, run_id),
        disqualification=queries.top_disqualification_reasons(engine, crm),
        other={k: (v if isinstance(v, (str, int, float, bool)) or v is None
                   else json.dumps(v, sort_keys=True, default=str)) for k, v in other.items()},
        own_scores=own_scores,
        charts={
            "stages": charts.counts_chart(stages, "Proposed stages in this run"),
            "transitions": charts.bar_chart(
                sorted(((k, float(v)) for k, v in transitions.items()), key=lambda kv: -kv[1])[:8],
                title="Stage transitions", color=charts.PALETTE[4], width=640),
            "histogram": charts.histogram_chart(histogram),
            "grades": charts.grade_chart(grades),
        },
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    return html


def write_run_report(engine: Engine, crm: str, run_id: str, folder: Path | str | None = None) -> Path:
    """Write the run's report to `<folder>/<crm>/<run folder>.html` (atomically) and return it."""
    path = report_path(folder if folder is not None else default_report_folder(), crm, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_run_report(engine, crm, run_id)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("run report for %s run %s written (%d bytes)", crm, run_id, len(html))
    return path
