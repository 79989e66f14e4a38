"""One function per DAG step. Each takes a `RunContext`, works through the warehouse, and returns
a small JSON-able summary (counts and durations) that the DAG passes on as XCom.

Nothing here needs a running Airflow: the CLI (`leadflow run`) calls the same functions in order.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

import pandas as pd
from sqlalchemy import Engine

from leadflow.schema import LEAD_COLUMNS, SALES_OWNED_STAGES
from leadflow.warehouse import repo
from leadflow.warehouse.db import ensure_schema, get_engine

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    crm: str
    run_id: str
    dry_run: bool = False
    full_refresh: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    warehouse_url: str | None = None
    model_path: str | None = None
    connection_id: str | None = None
    # Set by the DAG from Airflow's connection store; the CLI reads AIRFLOW_CONN_* instead.
    connection: Any = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def conn_id(self) -> str:
        return self.connection_id or f"leadflow_{self.crm}"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = get_engine(self.warehouse_url)
            ensure_schema(self._engine)
        return self._engine

    @property
    def score_as_of(self) -> datetime:
        """Scores are computed as of the run's day, so that re-runs on the same day agree."""
        return self.now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


@contextmanager
def _timed(summary: dict[str, Any], key: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        summary.setdefault("durations_s", {})[key] = round(time.perf_counter() - started, 3)


def _connector(ctx: RunContext):
    from leadflow.connections import get_connection
    from leadflow.crm.registry import get_connector

    return get_connector(ctx.crm, ctx.connection or get_connection(ctx.conn_id))


# --- extract ------------------------------------------------------------------------------------
def extract(ctx: RunContext) -> dict[str, Any]:
    """Pull leads changed since the watermark (all leads on full refresh) into the warehouse."""
    engine = ctx.engine
    repo.start_run(engine, ctx.crm, ctx.run_id, ctx.dry_run)
    summary: dict[str, Any] = {}
    since = None if ctx.full_refresh else repo.get_watermark(engine, ctx.crm)
    pulled = companies = issues = pages = 0
    connector = _connector(ctx)
    try:
        with _timed(summary, "extract"):
            for page in connector.pull(since):
                with engine.begin() as conn:
                    pulled += repo.land_page(
                        conn, ctx.crm, ctx.run_id, page.leads, page.companies, page.issues
                    )
                    if page.watermark is not None:
                        repo.set_watermark(conn, ctx.crm, page.watermark)
                companies += len(page.companies)
                issues += len(page.issues)
                pages += 1
        deleted = repo.mark_unseen_deleted(engine, ctx.crm, ctx.run_id) if ctx.full_refresh else 0
    finally:
        stats = dict(getattr(connector, "stats", {}) or {})
        connector.close()
    summary.update(
        {
            "pulled": pulled,
            "companies_pulled": companies,
            "input_issues": issues,
            "pages": pages,
            "full_refresh": ctx.full_refresh,
            "marked_deleted": deleted,
            "extract_api": stats,
        }
    )
    log.info("extract %s: %d leads, %d companies, %d input issues in %d pages",
             ctx.crm, pulled, companies, issues, pages)
    repo.merge_run_summary(engine, ctx.crm, ctx.run_id, summary)
    return _small(summary)


# --- qualify ------------------------------------------------------------------------------------
_TS_COLUMNS = [c for c, kind in LEAD_COLUMNS.items() if kind == "ts"]


def build_qualify_frame(leads: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Leads with their company's firmographics filled in where the lead has none, timestamps as
    UTC datetimes, and e-mail domain flags: the engine's input."""
    frame = leads.copy()
    if not companies.empty:
        comp = companies.set_index("company_id")
        idx = frame["company_id"]
        for lead_col, comp_col in (
            ("industry", "industry"),
            ("employees", "employees"),
            ("annual_revenue", "annual_revenue"),
            ("country", "country"),
        ):
            fill = idx.map(comp[comp_col]) if comp_col in comp else None
            if fill is not None:
                frame[lead_col] = frame[lead_col].where(frame[lead_col].notna(), fill)
        frame["technologies"] = idx.map(comp["technologies"]) if "technologies" in comp else None
        frame["company_domain"] = idx.map(comp["domain"]) if "domain" in comp else None
    for col in ("employees", "annual_revenue", "page_views", "visits", "pricing_page_views",
                "email_clicks", "content_downloads", "form_submissions"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in _TS_COLUMNS:
        frame[col] = pd.to_datetime(pd.to_numeric(frame[col], errors="coerce"), unit="ms", utc=True)
    frame["do_not_contact"] = frame["do_not_contact"].fillna(False).astype(bool)
    if "email_domain" not in frame.columns:
        from leadflow.enrich.domains import email_domain_flags

        frame = frame.join(email_domain_flags(frame["email"]))
    return frame


def qualify(ctx: RunContext) -> dict[str, Any]:
    """Score every open lead with the configured model; store the scores."""
    from leadflow.qualify import load_model, score_leads

    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "qualify"):
        model = load_model(ctx.model_path)
        leads = repo.load_leads(engine, ctx.crm, include_deleted=True)
        total = int(len(leads))
        owned = leads["lifecycle_stage"].isin(SALES_OWNED_STAGES) | leads["is_deleted"].fillna(False).astype(bool)
        open_leads = leads.loc[~owned].reset_index(drop=True)
        frame = build_qualify_frame(open_leads, repo.load_companies(engine, ctx.crm))
        scores = score_leads(frame, model, ctx.score_as_of)
        repo.save_scores(engine, ctx.crm, ctx.run_id, scores)
    summary.update(
        {
            "total": total,
            "scored": int(len(scores)),
            "skipped_owned": int(owned.sum()),
            "model_version": model.version,
            "proposed_stages": {str(k): int(v) for k, v in scores["stage"].value_counts().items()},
            "disqualified": int(scores["disqualification_reason"].notna().sum()),
        }
    )
    log.info("qualify %s: %d scored, %d left alone (sales-owned or deleted), model %s",
             ctx.crm, summary["scored"], summary["skipped_owned"], model.version)
    repo.merge_run_summary(engine, ctx.crm, ctx.run_id, summary)
    return _small(summary)


# --- push ---------------------------------------------------------------------------------------
def push(ctx: RunContext) -> dict[str, Any]:
    """Send the changed values to the CRM (or, on a dry run, only describe them)."""
    from leadflow.push.diff import compute_changes
    from leadflow.push.writer import preview, push_changes

    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "push"):
        scores = repo.load_scores(engine, ctx.crm)
        current = repo.load_leads(engine, ctx.crm)
        changes = compute_changes(scores, current)
        summary["changed"] = int(changes["record_id"].nunique()) if len(changes) else 0
        summary["preview"] = preview(changes)
        model_version = str(scores["model_version"].iloc[0]) if len(scores) else None
        if ctx.dry_run:
            summary.update({"pushed": 0, "rejected": 0, "failed": 0, "write_calls": 0, "dry_run": True})
        else:
            from leadflow.push.lease import push_lease

            connector = _connector(ctx)
            try:
                with push_lease(engine, ctx.crm, holder=ctx.run_id):
                    connector.ensure_schema()
                    outcome = push_changes(engine, connector, ctx.crm, ctx.run_id, changes, model_version)
            finally:
                connector.close()
            summary.update(
                {
                    "pushed": outcome.pushed,
                    "rejected": outcome.rejected,
                    "failed": outcome.failed,
                    "unknown": outcome.unknown,
                    "write_calls": outcome.write_calls,
                    "dry_run": False,
                }
            )
    log.info("push %s: %d records changed, %d pushed, %d rejected (dry run: %s)",
             ctx.crm, summary["changed"], summary["pushed"], summary["rejected"], ctx.dry_run)
    repo.merge_run_summary(engine, ctx.crm, ctx.run_id, summary)
    return _small(summary)


# --- report -------------------------------------------------------------------------------------
REPORT_KEYS = ("pulled", "scored", "changed", "pushed", "rejected")


def report(ctx: RunContext, status: str = "success") -> dict[str, Any]:
    """Close the run and return its summary."""
    repo.finish_run(ctx.engine, ctx.crm, ctx.run_id, status)
    summary = repo.get_run_summary(ctx.engine, ctx.crm, ctx.run_id)
    return run_summary(ctx.engine, ctx.crm, ctx.run_id, summary)


def run_summary(engine: Engine, crm: str, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"crm": crm, "run_id": run_id}
    for key in REPORT_KEYS:
        out[key] = int(summary.get(key, 0) or 0)
    for key, value in summary.items():
        if key not in out and key != "preview":
            out[key] = value
    if "preview" in summary:
        out["preview"] = summary["preview"]
    return out


def run_all(ctx: RunContext) -> dict[str, Any]:
    """The whole pipeline in-process (the CLI's `leadflow run`)."""
    try:
        extract(ctx)
        qualify(ctx)
        push(ctx)
    except Exception:
        repo.finish_run(ctx.engine, ctx.crm, ctx.run_id, "failed")
        raise
    return report(ctx)


def _small(summary: dict[str, Any]) -> dict[str, Any]:
    """What goes to XCom: the counts, not the preview."""
    return {k: v for k, v in summary.items() if k != "preview"}


def default_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
