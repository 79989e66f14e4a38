"""Read-only queries behind the Leadflow page and the run report.

Pure functions over a warehouse engine: each returns plain dicts and lists (JSON-able), never
writes, and returns an empty result when a table it reads does not exist yet (a warehouse that
has not seen a run, or a quality step that has not created its tables).
Aggregation happens in the database, so the page stays fast with a million scored leads.

The SLA and calibration panels import their packages when first called: those load pandas (about
0.7 s, `python -X importtime`), and the Airflow plugin imports this module, through the page, in
every Airflow process that loads plugins.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, TypeVar

from sqlalchemy import Engine, and_, case, func, inspect, select
from sqlalchemy.exc import NoSuchTableError, OperationalError, ProgrammingError

from leadflow.accounts.tables import accounts as acc
from leadflow.push.tables import push_overrides as po
from leadflow.quality.tables import dq_results
from leadflow.warehouse.quarantine_store import quarantine
from leadflow.schema import stage_sort_key
from leadflow.warehouse.tables import companies, leads, push_log, runs, scores

log = logging.getLogger(__name__)

T = TypeVar("T")

FIT_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
ENGAGEMENT_DIGITS: tuple[str, ...] = ("1", "2", "3", "4")
HISTOGRAM_BINS = 10  # 0-10, 10-20, ..., 90-100
FAILED_PUSH_STATUSES: tuple[str, ...] = ("rejected", "failed", "unknown")
# Per-run counts shown in the runs table, in column order.
RUN_COUNT_KEYS: tuple[str, ...] = (
    "pulled", "enriched", "quarantined", "scored", "changed", "pushed", "rejected", "overrides",
)


def _guard(default: Callable[[], T]):
    """Return `default()` instead of failing when a table is missing (fresh warehouse)."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        def inner(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except (OperationalError, ProgrammingError, NoSuchTableError) as exc:
                if _is_missing_table(exc):
                    log.debug("%s: table missing, returning empty result", fn.__name__)
                    return default()
                raise

        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        inner.__wrapped__ = fn  # type: ignore[attr-defined]
        return inner

    return wrap


def _is_missing_table(exc: Exception) -> bool:
    if isinstance(exc, NoSuchTableError):
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _summary(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- CRMs and runs ------------------------------------------------------------------------------
@_guard(list)
def list_crms(engine: Engine) -> list[str]:
    """CRMs that have at least one run, alphabetically."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(runs.c.crm).distinct().order_by(runs.c.crm))]


def _run_counts(summary: dict[str, Any]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {key: _int_or_none(summary.get(key)) for key in RUN_COUNT_KEYS}
    if counts["quarantined"] is None:
        quality = summary.get("quality") or summary.get("quarantine")
        if isinstance(quality, dict):
            counts["quarantined"] = _int_or_none(quality.get("quarantined"))
    if counts["enriched"] is None and isinstance(summary.get("enrich"), dict):
        counts["enriched"] = _int_or_none(summary["enrich"].get("enriched"))
    return counts


@_guard(list)
def recent_runs(engine: Engine, crm: str, limit: int = 10) -> list[dict[str, Any]]:
    """The CRM's last `limit` runs, newest first, with their counts and parsed summary."""
    query = (
        select(runs)
        .where(runs.c.crm == crm)
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for row in rows:
        summary = _summary(row["summary"])
        duration = None
        if row["finished_at"] is not None and row["started_at"] is not None:
            duration = round((row["finished_at"] - row["started_at"]) / 1000.0, 1)
        out.append(
            {
                "run_id": row["run_id"],
                "crm": row["crm"],
                "status": row["status"],
                "dry_run": bool(row["dry_run"]),
                "started_at": row["started_at"],
                "finished_at": row["finished_at"],
                "duration_s": duration,
                "counts": _run_counts(summary),
                "summary": summary,
            }
        )
    return out


def funnel_by_run(run_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Records per proposed lifecycle stage for each run (oldest first), from the run summaries.

    `run_rows` are `recent_runs` rows. Stages appear in funnel order; unknown stages follow.
    """
    ordered = list(reversed(run_rows))
    seen: set[str] = set()
    per_run = []
    for row in ordered:
        stages = row["summary"].get("proposed_stages") or {}
        counts = {str(k): int(v) for k, v in stages.items() if _int_or_none(v) is not None}
        seen.update(counts)
        per_run.append({"run_id": row["run_id"], "dry_run": row["dry_run"], "counts": counts})
    return {"stages": sorted(seen, key=stage_sort_key), "runs": per_run}


@_guard(dict)
def current_stages(engine: Engine, crm: str) -> dict[str, int]:
    """Records per lifecycle stage as the CRM holds them now (the landed leads)."""
    stage = func.coalesce(leads.c.lifecycle_stage, "(none)")
    query = (
        select(stage.label("stage"), func.count().label("n"))
        .where(leads.c.crm == crm)
        .group_by(stage)
    )
    with engine.connect() as conn:
        counts = {str(s): int(n) for s, n in conn.execute(query)}
    return dict(sorted(counts.items(), key=lambda kv: stage_sort_key(kv[0])))


# --- scores ---------------------------------------------------------------------------------------
def _empty_histogram() -> list[dict[str, Any]]:
    width = 100 // HISTOGRAM_BINS
    return [{"lo": i * width, "hi": (i + 1) * width, "count": 0} for i in range(HISTOGRAM_BINS)]


@_guard(_empty_histogram)
def score_histogram(engine: Engine, crm: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """Current scores in ten bins of width 10 (the last bin includes 100).

    Returns [{"lo": 0, "hi": 10, "count": n}, ...]; with `run_id`, only scores of that run.
    """
    width = 100 // HISTOGRAM_BINS
    columns = []
    for i in range(HISTOGRAM_BINS):
        lo, hi = i * width, (i + 1) * width
        upper = scores.c.score <= hi if i == HISTOGRAM_BINS - 1 else scores.c.score < hi
        lower = scores.c.score >= lo if i else scores.c.score.is_not(None)
        columns.append(func.sum(case((and_(lower, upper), 1), else_=0)).label(f"b{i}"))
    query = select(*columns).where(scores.c.crm == crm)
    if run_id is not None:
        query = query.where(scores.c.run_id == run_id)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return [
        {"lo": i * width, "hi": (i + 1) * width, "count": int((row[i] if row else 0) or 0)}
        for i in range(HISTOGRAM_BINS)
    ]


@_guard(lambda: {"fit": list(FIT_LETTERS), "engagement": list(ENGAGEMENT_DIGITS), "cells": {}, "total": 0})
def grade_matrix(engine: Engine, crm: str, run_id: str | None = None) -> dict[str, Any]:
    """Records per grade: fit letter (A best .. D) x engagement digit (1 best .. 4).

    Returns {"fit": [...], "engagement": [...], "cells": {"A1": n, ...}, "total": n}.
    """
    query = (
        select(scores.c.grade, func.count().label("n"))
        .where(scores.c.crm == crm, scores.c.grade.is_not(None))
        .group_by(scores.c.grade)
    )
    if run_id is not None:
        query = query.where(scores.c.run_id == run_id)
    with engine.connect() as conn:
        cells = {str(g): int(n) for g, n in conn.execute(query)}
    return {
        "fit": list(FIT_LETTERS),
        "engagement": list(ENGAGEMENT_DIGITS),
        "cells": cells,
        "total": sum(cells.values()),
    }


@_guard(list)
def top_disqualification_reasons(engine: Engine, crm: str, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent disqualification reasons among the current scores."""
    n = func.count().label("n")
    query = (
        select(scores.c.disqualification_reason, n)
        .where(scores.c.crm == crm, scores.c.disqualification_reason.is_not(None),
               scores.c.disqualification_reason != "")
        .group_by(scores.c.disqualification_reason)
        .order_by(n.desc(), scores.c.disqualification_reason)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [{"reason": r, "records": int(c)} for r, c in conn.execute(query)]


# --- data quality ---------------------------------------------------------------------------------
@_guard(list)
def top_quarantine_reasons(engine: Engine, crm: str, limit: int = 10) -> list[dict[str, Any]]:
    """Active quarantine entries grouped by failed expectation and column, most records first."""
    records = func.count(func.distinct(quarantine.c.record_id)).label("records")
    query = (
        select(quarantine.c.expectation, quarantine.c.column, records)
        .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None))
        .group_by(quarantine.c.expectation, quarantine.c.column)
        .order_by(records.desc(), quarantine.c.expectation, quarantine.c.column)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            {"expectation": e, "column": c or "", "records": int(r)} for e, c, r in conn.execute(query)
        ]


@_guard(dict)
def dq_checks_by_run(engine: Engine, crm: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per run id: number of checks, failed checks and the failed ones (stage, name, observed)."""
    if not run_ids:
        return {}
    query = (
        select(dq_results.c.run_id, dq_results.c.stage, dq_results.c.expectation,
               dq_results.c.success, dq_results.c.observed, dq_results.c.threshold,
               dq_results.c.unexpected_count)
        .where(dq_results.c.crm == crm, dq_results.c.run_id.in_(run_ids))
        .order_by(dq_results.c.run_id, dq_results.c.stage, dq_results.c.expectation)
    )
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            entry = out.setdefault(row["run_id"], {"checks": 0, "failed": 0, "failures": []})
            entry["checks"] += 1
            if not row["success"]:
                entry["failed"] += 1
                entry["failures"].append(
                    {
                        "stage": row["stage"],
                        "check": row["expectation"],
                        "observed": row["observed"],
                        "threshold": row["threshold"],
                        "unexpected": _int_or_none(row["unexpected_count"]),
                    }
                )
    return out


@_guard(list)
def dq_results_for_run(engine: Engine, crm: str, run_id: str) -> list[dict[str, Any]]:
    """Every check of one run (for the run report), gate failures first."""
    query = (
        select(dq_results.c.stage, dq_results.c.expectation, dq_results.c.success,
               dq_results.c.observed, dq_results.c.threshold, dq_results.c.unexpected_count)
        .where(dq_results.c.crm == crm, dq_results.c.run_id == run_id)
        .order_by(dq_results.c.success, dq_results.c.stage, dq_results.c.expectation)
    )
    with engine.connect() as conn:
        return [
            {
                "stage": r["stage"], "check": r["expectation"], "success": bool(r["success"]),
                "observed": r["observed"], "threshold": r["threshold"],
                "unexpected": _int_or_none(r["unexpected_count"]),
            }
            for r in conn.execute(query).mappings()
        ]


# --- pushes -----------------------------------------------------------------------------------------
@_guard(list)
def failed_pushes(engine: Engine, crm: str, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent values the CRM refused or never confirmed (rejected, failed, unknown)."""
    query = (
        select(push_log.c.run_id, push_log.c.record_id, push_log.c.field, push_log.c.after,
               push_log.c.status, push_log.c.attempts, push_log.c.error, push_log.c.updated_at)
        .where(push_log.c.crm == crm, push_log.c.status.in_(FAILED_PUSH_STATUSES))
        .order_by(push_log.c.updated_at.desc(), push_log.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


@_guard(dict)
def push_status_counts(engine: Engine, crm: str, run_id: str | None = None) -> dict[str, int]:
    """Audit-log rows per status (all runs, or one run)."""
    query = select(push_log.c.status, func.count()).where(push_log.c.crm == crm)
    if run_id is not None:
        query = query.where(push_log.c.run_id == run_id)
    query = query.group_by(push_log.c.status).order_by(push_log.c.status)
    with engine.connect() as conn:
        return {str(s): int(n) for s, n in conn.execute(query)}


OVERRIDES_PER_PAGE = 50


def _overrides_query(crm: str, run_id: str | None, field: str | None):
    columns = (po.c.run_id, po.c.record_id, po.c.field, po.c.current, po.c.wanted, po.c.writer, po.c.changed_by,
               po.c.changed_at, po.c.seen_at)
    query = select(*columns).where(po.c.crm == crm)
    if field is not None:
        query = query.where(po.c.field == field)
    if run_id is not None:
        return query.where(po.c.run_id == run_id), po
    latest = select(func.max(po.c.id)).where(po.c.crm == crm).group_by(po.c.record_id, po.c.field)
    return query.where(po.c.id.in_(latest.scalar_subquery())), po


@_guard(list)
def overrides(engine: Engine, crm: str, run_id: str | None = None, limit: int = OVERRIDES_PER_PAGE, offset: int = 0,
              field: str | None = None) -> list[dict[str, Any]]:
    """Shared values someone else set that leadflow left alone (newest first; one run, or the
    latest finding per record and field across runs), one page of them, of one field if given."""
    query, po = _overrides_query(crm, run_id, field)
    query = query.order_by(po.c.seen_at.desc(), po.c.id.desc()).limit(limit).offset(offset)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


@_guard(dict)
def overrides_paging(engine: Engine, crm: str, page: int = 1, field: str | None = None) -> dict[str, Any]:
    """How many overrides there are (of `field`, latest per record and field), the fields that
    have any, and which page of OVERRIDES_PER_PAGE is shown."""
    query, po = _overrides_query(crm, None, field)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())
        fields = sorted(str(f) for (f,) in conn.execute(select(po.c.field).where(po.c.crm == crm).distinct()))
    pages = max(1, -(-total // OVERRIDES_PER_PAGE))
    return {"total": total, "page": min(page, pages), "pages": pages, "field": field, "fields": fields,
            "per_page": OVERRIDES_PER_PAGE}


@_guard(dict)
def sla(engine: Engine, crm: str) -> dict[str, Any]:
    """The SLA between marketing and sales as measured now (`leadflow.verdicts.sla`)."""
    # slow: see the module docstring
    from leadflow.verdicts.sla import sla_figures
    from leadflow.warehouse.repo import now_ms

    return sla_figures(engine, crm, now_ms())


@_guard(dict)
def accounts_overview(engine: Engine, crm: str, limit: int = 20) -> dict[str, Any]:
    """The account view: the top companies by company score (then engaged leads), with the
    company's name, engaged leads, committee roles covered and best lead; and the totals."""
    name = select(companies.c.name).where(companies.c.crm == acc.c.crm, companies.c.company_id == acc.c.company_id) \
        .limit(1).scalar_subquery()
    query = (
        select(acc.c.company_id, name.label("name"), acc.c.company_score, acc.c.leads, acc.c.engaged, acc.c.roles,
               acc.c.best_record_id, acc.c.best_score, acc.c.committee)
        .where(acc.c.crm == crm)
        .order_by(acc.c.company_score.desc(), acc.c.engaged.desc(), acc.c.company_id)
        .limit(limit)
    )
    totals = select(func.count(), func.sum(case((acc.c.engaged > 0, 1), else_=0)),
                    func.sum(case((acc.c.roles.like("%;%"), 1), else_=0))).where(acc.c.crm == crm)
    with engine.connect() as conn:
        top = [dict(r) for r in conn.execute(query).mappings()]
        total, engaged, committees = conn.execute(totals).one()
    return {"top": top, "total": int(total or 0), "engaged": int(engaged or 0), "committees": int(committees or 0)}


@_guard(list)
def rules_models(engine: Engine, crm: str, limit: int = 5) -> list[dict[str, Any]]:
    """The newest rules models recorded for the CRM (`leadflow.predict.rules`): the published
    champion qualify scores with, and the candidates the gate judged, with its figures."""
    from leadflow.predict.rules import list_rules

    return list_rules(engine, crm)[:limit]


@_guard(list)
def calibration(engine: Engine, crm: str) -> list[dict[str, Any]]:
    """Predicted (the score at the handoff) against observed conversion (sales' verdicts and
    outcomes, `leadflow.predict.labels`) by score decile, over every answered handoff."""
    # slow: see the module docstring
    from leadflow.predict.labels import calibration as by_band, read_handoff_labels
    from leadflow.warehouse.repo import now_ms

    labels = read_handoff_labels(engine, crm, now_ms=now_ms())
    return by_band(labels["score"], labels["label"]) if len(labels) else []


# --- dry-run preview ----------------------------------------------------------------------------------
def latest_preview(run_rows: list[dict[str, Any]], prefer_dry_run: bool = True) -> dict[str, Any] | None:
    """The push preview to show: the newest dry run's (what a dry run is for), else the newest
    run's that has one (what it sent). Returns the preview with its run id, or None."""
    candidates = [r for r in run_rows if isinstance(r["summary"].get("preview"), dict)]
    if prefer_dry_run:
        dry = [r for r in candidates if r["dry_run"]]
        candidates = dry or candidates
    if not candidates:
        return None
    row = candidates[0]
    return {"run_id": row["run_id"], "dry_run": row["dry_run"], "status": row["status"],
            **row["summary"]["preview"]}


def table_names(engine: Engine) -> set[str]:
    """Tables present in the warehouse (diagnostics)."""
    return set(inspect(engine).get_table_names())


def page_data(engine: Engine, crm: str, runs_limit: int = 10, overrides_page: int = 1,
              overrides_field: str | None = None) -> dict[str, Any]:
    """Everything the Leadflow page shows for one CRM (one page of its overrides)."""
    run_rows = recent_runs(engine, crm, runs_limit)
    paging = overrides_paging(engine, crm, overrides_page, overrides_field) or {
        "total": 0, "page": 1, "pages": 1, "field": overrides_field, "fields": [], "per_page": OVERRIDES_PER_PAGE}
    dq = dq_checks_by_run(engine, crm, [r["run_id"] for r in run_rows])
    return {
        "crm": crm,
        "runs": run_rows,
        "funnel": funnel_by_run(run_rows),
        "current_stages": current_stages(engine, crm),
        "histogram": score_histogram(engine, crm),
        "grades": grade_matrix(engine, crm),
        "dq": dq,
        "quarantine_reasons": top_quarantine_reasons(engine, crm),
        "disqualification_reasons": top_disqualification_reasons(engine, crm),
        "failed_pushes": failed_pushes(engine, crm),
        "push_status": push_status_counts(engine, crm),
        "overrides": overrides(engine, crm, offset=(paging["page"] - 1) * OVERRIDES_PER_PAGE, field=overrides_field),
        "overrides_paging": paging,
        "sla": sla(engine, crm),
        "calibration": calibration(engine, crm),
        "rules_models": rules_models(engine, crm),
        "accounts": accounts_overview(engine, crm),
        # The account view in counts, as the newest run that computed it stored it.
        "account_figures": next((r["summary"]["accounts"] for r in run_rows
                                 if isinstance(r["summary"].get("accounts"), dict)), None),
        "preview": latest_preview(run_rows),
    }
