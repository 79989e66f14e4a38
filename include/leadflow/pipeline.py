"""One function per DAG step. Each takes a `RunContext`, works through the warehouse, and returns
a small JSON-able summary (counts and durations) that the DAG passes on as XCom.

Order: extract -> enrich -> validate -> qualify (per shard) -> accounts -> validate_scores ->
plan_push -> push (per shard) -> push_accounts -> report. Nothing here needs a running Airflow: the CLI (`leadflow run`) calls
the same functions in the same order.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from leadflow import progress
from leadflow.crm.base import CrmBudgetExhausted
from leadflow.pulled import Watermark
from leadflow.runtime import keep_freed_memory
from leadflow.schema import CRM_VALUE_PREFIX, LEAD_COLUMNS, SALES_OWNED_STAGES
from leadflow.settings import PipelineSettings, load_pipeline_settings
from leadflow.warehouse import repo
from leadflow.warehouse.db import ensure_schema, get_engine

log = logging.getLogger(__name__)


class ChangeGuardError(RuntimeError):
    """The push would change more records than the configured share: a likely bad model."""


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
    push_enabled: bool = True
    force: bool = False  # push even when the change guard trips
    only_record_ids: Sequence[str] | None = None
    since: datetime | None = None  # pull from here instead of the stored watermark
    shard: int | None = None
    shards: int = 1
    rate_share: float = 1.0  # this task's share of the CRM's rate limit (parallel shards)
    settings: PipelineSettings = field(default_factory=load_pipeline_settings)
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

    options = {"rate_share": ctx.rate_share} if ctx.rate_share != 1.0 else {}
    return get_connector(ctx.crm, ctx.connection or get_connection(ctx.conn_id), **options)


def _record(ctx: RunContext, step: str, summary: dict[str, Any], shard: int | None = None) -> dict[str, Any]:
    repo.record_step(ctx.engine, ctx.crm, ctx.run_id, step, summary, shard=shard)
    return {k: v for k, v in summary.items() if k != "preview"}  # XCom gets counts only


# --- extract ------------------------------------------------------------------------------------
def extract(ctx: RunContext) -> dict[str, Any]:
    """Pull leads changed since the watermark (all leads on full refresh) into the warehouse.

    Each page is committed with its watermark. If the CRM's API budget runs out, the pages
    landed so far stay, the watermark stays where they end, and the next run resumes there.
    """
    engine = ctx.engine
    repo.start_run(engine, ctx.crm, ctx.run_id, ctx.dry_run)
    summary: dict[str, Any] = {}
    if ctx.full_refresh:
        since = None
    elif ctx.since is not None:
        since = Watermark(modified_ms=int(ctx.since.timestamp() * 1000))
    else:
        since = repo.get_watermark(engine, ctx.crm)
    pulled = companies = issues = pages = 0
    removed = {"deleted": 0, "merged": 0}
    held: list[str] = []  # leads quarantined for values the warehouse cannot store
    connector = _connector(ctx)
    try:
        with _timed(summary, "extract"), progress.track(f"pull {ctx.crm}", unit="leads") as advance:
            try:
                for page in connector.pull(since):
                    with engine.begin() as conn:
                        landed = repo.land_page(
                            conn, ctx.crm, ctx.run_id, page.leads, page.companies, page.issues
                        )
                        for kind, n in repo.mark_removed(conn, ctx.crm, page.removed).items():
                            removed[kind] += n
                        if page.watermark is not None:
                            repo.set_watermark(conn, ctx.crm, page.watermark)
                    pulled += landed.leads
                    held.extend(landed.held_ids)
                    companies += len(page.companies)
                    issues += len(page.issues)
                    pages += 1 if page.leads else 0
                    advance(len(page.leads))
            except CrmBudgetExhausted as exc:
                summary["warning"] = f"API budget exhausted after {pulled} leads; resumes next run ({exc})"
                log.warning("extract %s: %s", ctx.crm, summary["warning"])
        complete = "warning" not in summary
        deleted = repo.mark_unseen_deleted(engine, ctx.crm, ctx.run_id) if ctx.full_refresh and complete else 0
        if complete:  # an exhausted budget is kept for the pull that resumes next run
            _verdicts(ctx, connector)
    finally:
        stats = dict(getattr(connector, "stats", {}) or {})
        connector.close()
    summary.update(
        {
            "pulled": pulled,
            "companies_pulled": companies,
            "input_issues": issues,
            "quarantined_unstorable": len(held),
            "pages": pages,
            "full_refresh": ctx.full_refresh,
            "marked_deleted": deleted + removed["deleted"] + removed["merged"],
            "removed_deleted": removed["deleted"],
            "removed_merged": removed["merged"],
            "extract_api": stats,
        }
    )
    log.info("extract %s: %d leads (%d quarantined for unstorable values), %d companies, "
             "%d input issues in %d pages; %d archived or deleted, %d merged away", ctx.crm, pulled, len(held),
             companies, issues, pages, removed["deleted"], removed["merged"])
    return _record(ctx, "extract", summary)


def _verdicts(ctx: RunContext, connector: Any) -> None:
    """Sales' verdicts on the handed-over leads (`leadflow.verdicts`), recorded as a step of
    their own. Read here, before qualify, while every handoff is still in the scores; a CRM
    error leaves them to the next run with a warning instead of failing the pulled run."""
    from leadflow.crm.base import CrmError
    from leadflow.predict.rules import rules_for_run
    from leadflow.verdicts.read import read_verdicts

    summary: dict[str, Any] = {}
    calls = dict(getattr(connector, "stats", {}) or {}).get("requests", 0)
    with _timed(summary, "verdicts"):
        try:
            summary.update(read_verdicts(ctx.engine, connector, ctx.crm, ctx.run_id,
                                         rules_for_run(ctx.engine, ctx.crm, ctx.model_path).model.handoff,
                                         int(ctx.now.timestamp() * 1000)))
        except CrmError as exc:
            summary["warning"] = f"sales' verdicts not read, next run tries again ({type(exc).__name__})"
            log.warning("verdicts %s: %s", ctx.crm, summary["warning"])
    summary["verdicts_api_requests"] = dict(getattr(connector, "stats", {}) or {}).get("requests", 0) - calls
    _record(ctx, "verdicts", summary)


# --- the lead population --------------------------------------------------------------------------
def _partition(leads: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Live leads leadflow may work on, and the number of live ones it leaves alone
    (sales-owned stages: opportunity, customer, ...). A record that replaced a converted lead
    (`converted_from`, a followed Salesforce Contact) is worked on in its sales-owned stage: it is
    scored, and the engine and the diff leave its stage and status alone."""
    live = leads[~leads["is_deleted"].fillna(False).astype(bool)]
    followed = live["converted_from"].notna() if "converted_from" in live else False
    owned = live["lifecycle_stage"].isin(SALES_OWNED_STAGES) & ~followed
    return live.loc[~owned].reset_index(drop=True), int(owned.sum())


# --- enrich -------------------------------------------------------------------------------------
def enrich(ctx: RunContext) -> dict[str, Any]:
    """Resolve every open lead's company and firmographics (cache -> reference file -> API)."""
    from leadflow.enrich import build_chain, enrich_leads, store_enrichment

    keep_freed_memory()  # vectorised step: reuse freed arrays (leadflow.runtime)
    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "enrich"):
        leads, _ = _partition(repo.load_leads(engine, ctx.crm))
        chain = build_chain(engine, ctx.settings.enrichment)
        try:
            result = enrich_leads(leads, repo.load_companies(engine, ctx.crm), chain,
                                  ctx.settings.enrichment, now=ctx.now)
        finally:
            close = getattr(chain, "close", None)
            if close:
                close()
        store_enrichment(engine, ctx.crm, ctx.run_id, result.frame)
    summary.update(result.summary())
    summary["enrichment_lookups"] = dict(result.lookups)
    log.info("enrich %s: %d of %d leads matched to a company", ctx.crm, summary["enriched"], len(leads))
    return _record(ctx, "enrich", summary)


def _with_enrichment(engine: Engine, crm: str, leads: pd.DataFrame) -> pd.DataFrame:
    """Leads with resolved firmographics from the enrich step (lead values where it did not run)."""
    from leadflow.enrich import load_enrichment

    enriched = load_enrichment(engine, crm)
    frame = leads.copy()
    if enriched.empty:
        return frame
    enriched = enriched.drop_duplicates("record_id").set_index("record_id")
    # One hash lookup of the ids, then positional takes per column (Series.map + isin per
    # column hashed the ids again for each and walked Arrow strings in Python).
    pos = enriched.index.get_indexer(frame["record_id"])
    found = pd.Series(pos >= 0, index=frame.index)
    at = np.maximum(pos, 0)

    def column(col: str) -> pd.Series:
        return enriched[col].iloc[at].set_axis(frame.index)

    for col in ("industry", "employees", "annual_revenue", "country"):
        if col in enriched:
            frame[col] = column(col).where(found, frame[col])
    for col in ("technologies", "email_domain", "company_domain", "is_free_email", "is_disposable_email"):
        if col in enriched:
            frame[col] = column(col).where(found)
    return frame


# --- validate -----------------------------------------------------------------------------------
def _quality_settings():
    from leadflow.quality import load_settings_file

    return load_settings_file()


def _data_docs_folder() -> Path:
    from leadflow.warehouse.db import var_dir

    return var_dir() / "data_docs"


def validate(ctx: RunContext) -> dict[str, Any]:
    """Row checks (failing leads are quarantined) and the batch gate, before anything is scored."""
    from leadflow.quality import (
        RowCheckOptions, check_batch, failed_count, quarantined_ids, raise_if_failed,
        render_data_docs, store_results, update_quarantine, validate_rows,
    )

    keep_freed_memory()  # vectorised step: reuse freed arrays (leadflow.runtime)
    engine = ctx.engine
    summary: dict[str, Any] = {}
    settings = _quality_settings()
    with _timed(summary, "validate"):
        leads, skipped_owned = _partition(repo.load_leads(engine, ctx.crm))
        frame = _with_enrichment(engine, ctx.crm, leads)
        rows = validate_rows(frame, RowCheckOptions.from_settings(settings, ctx.crm), ctx.now)
        update_quarantine(engine, ctx.crm, ctx.run_id, rows.failures, rows.passed_ids, ctx.now)
        batch = check_batch(frame, rows, settings, ctx.now)
        store_results(engine, ctx.crm, ctx.run_id, [*rows.results, *batch], now=ctx.now)
        docs = render_data_docs(_data_docs_folder(), ctx.run_id, ctx.crm,
                                {"rows": (rows.results, rows.gx_result), "batch": (batch.results, batch.gx_result)},
                                now=ctx.now)
    # What qualify leaves out: the row-check failures and the leads held at extract for values
    # the warehouse could not store (those pass the row checks with the field cleared).
    quarantined = int(leads["record_id"].isin(quarantined_ids(engine, ctx.crm)).sum())
    summary.update(
        {
            "total": int(len(leads) + skipped_owned),
            "validated": int(len(leads)),
            "quarantined": quarantined,
            "skipped_owned": skipped_owned,
            "dq_failed_checks": failed_count(batch),
            "data_docs": str(docs),
        }
    )
    log.info("validate %s: %d leads, %d quarantined, %d batch checks failed",
             ctx.crm, len(leads), quarantined, summary["dq_failed_checks"])
    out = _record(ctx, "validate", summary)
    raise_if_failed(batch)  # after recording: the run report shows what failed
    return out


# --- qualify ------------------------------------------------------------------------------------
_TS_COLUMNS = [c for c, kind in LEAD_COLUMNS.items() if kind == "ts"]
_NUMERIC = ("employees", "annual_revenue", "page_views", "visits", "pricing_page_views",
            "email_clicks", "content_downloads", "form_submissions")


def build_qualify_frame(leads: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """The engine's input: leads with their company's firmographics filled in where neither the
    lead nor enrichment has them, timestamps as UTC datetimes, and e-mail domain flags."""
    frame = leads.copy()
    if not companies.empty:
        comp = companies.drop_duplicates("company_id").set_index("company_id")
        idx = frame["company_id"]
        for col in ("industry", "employees", "annual_revenue", "country"):
            frame[col] = frame[col].where(frame[col].notna(), idx.map(comp[col]))
        for lead_col, comp_col in (("technologies", "technologies"), ("company_domain", "domain")):
            fill = idx.map(comp[comp_col])
            frame[lead_col] = frame[lead_col].where(frame[lead_col].notna(), fill) if lead_col in frame else fill
    for col in _NUMERIC:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in _TS_COLUMNS:
        frame[col] = pd.to_datetime(pd.to_numeric(frame[col], errors="coerce"), unit="ms", utc=True)
    frame["do_not_contact"] = frame["do_not_contact"].astype("boolean").fillna(False).astype(bool)
    if "email_domain" not in frame.columns or "is_free_email" not in frame.columns:
        from leadflow.enrich.domains import email_domain_flags

        frame = frame.drop(columns=[c for c in ("email_domain", "is_free_email", "is_disposable_email")
                                    if c in frame.columns]).join(email_domain_flags(frame["email"]))
    for col in ("is_free_email", "is_disposable_email"):
        frame[col] = frame[col].astype("boolean").fillna(False).astype(bool)
    return frame


def _predictive(engine: Engine, crm: str, model: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame | None, str | None]:
    """The published champion's 0-100 `score` and top `factors` per lead, and its version,
    when the qualification model uses one."""
    predictive = getattr(model, "predictive", None)
    if not predictive or not getattr(predictive, "enabled", False) or frame.empty:
        return None, None
    from leadflow.predict.score import score_frame
    from leadflow.predict.store import load_champion
    from leadflow.predict.warehouse import prepare_leads

    champion = load_champion(engine, crm)
    if champion is None:
        log.info("qualify %s: predictive score enabled but no trained model yet", crm)
        return None, None
    return score_frame(champion, prepare_leads(frame, champion.mapping))[["score", "factors"]], champion.version


def _score_counts(scores: pd.Series) -> list[int]:
    """How many leads hold each integer score 0..100: the exact distribution in 101 numbers."""
    values = np.clip(np.rint(pd.to_numeric(scores, errors="coerce").dropna().to_numpy()), 0, 100).astype(int)
    return [int(c) for c in np.bincount(values, minlength=101)]


def _crm_sales_ready_since(leads: pd.DataFrame) -> pd.Series | None:
    """The handoff time each lead holds in the CRM (epoch ms by record id), from the pulled
    `crm_sales_ready_since` values (rendered as ISO 8601 UTC)."""
    column = f"{CRM_VALUE_PREFIX}sales_ready_since"
    if column not in leads.columns or not leads[column].notna().any():
        return None
    held = leads[leads[column].notna()]
    moments = pd.to_datetime(held[column], utc=True, errors="coerce", format="ISO8601")
    ms = pd.Series(moments.to_numpy(dtype="datetime64[ns]").astype(np.int64) // 1_000_000,
                   index=held["record_id"].to_numpy(), dtype=float)
    return ms[moments.notna().to_numpy()]


def qualify(ctx: RunContext) -> dict[str, Any]:
    """Score every open, unquarantined lead (of this shard) with the configured model."""
    from leadflow.predict.rules import rules_for_run
    from leadflow.qualify import score_leads
    from leadflow.qualify.handoff import carry_since, hold_back_rejected
    from leadflow.quality import quarantined_ids
    from leadflow.predict.versions import record_versions
    from leadflow.verdicts.read import load_events, load_handoffs
    from leadflow.verdicts.sla import record_handoffs

    keep_freed_memory()  # vectorised step: reuse freed arrays (leadflow.runtime)
    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "qualify"):
        rules = rules_for_run(engine, ctx.crm, ctx.model_path, publish=not ctx.dry_run)  # the published champion
        model = rules.model
        previous = repo.load_scores(engine, ctx.crm, ctx.shard, ctx.shards)
        leads, _ = _partition(repo.load_leads(engine, ctx.crm, shard=ctx.shard, shards=ctx.shards))
        held = quarantined_ids(engine, ctx.crm)
        leads = leads[~leads["record_id"].isin(held)]
        if ctx.only_record_ids:
            leads = leads[leads["record_id"].isin(set(ctx.only_record_ids))]
        frame = build_qualify_frame(_with_enrichment(engine, ctx.crm, leads.reset_index(drop=True)),
                                    repo.load_companies(engine, ctx.crm))
        predictive, champion = _predictive(engine, ctx.crm, model, frame)
        scores = score_leads(
            frame, model, ctx.score_as_of,
            predictive=None if predictive is None else predictive["score"].astype(float),
            predictive_factors=None if predictive is None else predictive["factors"],
        )
        scores["predictive_version"] = champion  # which published model scored these leads
        scores["rules_version"] = rules.version
        # A lead that stays sales-ready keeps the time it was first handed over.
        fresh = scores["sales_ready_since"]
        scores["sales_ready_since"] = carry_since(scores, previous, _crm_sales_ready_since(leads))
        # A lead sales rejected is not handed over again on the same evidence.
        scores, held = hold_back_rejected(scores, load_events(engine, ctx.crm), model.handoff.rehandoff_min_score_gain,
                                          fresh, load_handoffs(engine, ctx.crm))
        handed_over = int((fresh.notna() & (scores["sales_ready_since"] == fresh)).sum())
        repo.save_scores(engine, ctx.crm, ctx.run_id, scores, ctx.shard, ctx.shards,
                         replace=not ctx.only_record_ids)
        # A dry run hands nothing to sales; a lead that may wait for its buying committee is
        # recorded by the accounts step, which sees every shard's leads.
        if not ctx.dry_run and not model.accounts.handoff_waits_for_second_persona:
            record_handoffs(engine, ctx.crm, ctx.run_id, scores)
        # The inputs as scored now, kept when they changed: training takes them as they were.
        record_versions(engine, ctx.crm, ctx.run_id, frame, _versioned_columns(frame, model),
                        int(ctx.score_as_of.timestamp() * 1000), ctx.shard, ctx.shards)
    summary.update(
        {
            "scored": int(len(scores)),
            "model_version": model.version,
            "rules_version": rules.version,
            "proposed_stages": {str(k): int(v) for k, v in scores["stage"].value_counts().items()},
            "disqualified": int(scores["disqualification_reason"].notna().sum()),
            "sales_ready": int(scores["sales_ready"].sum()),
            "handed_over": handed_over,  # sales-ready now, not before: new for sales
            **held,  # held_back_after_rejection, handed_over_again (within handed_over)
            # Shards add up; validate_scores compares the two distributions (drift).
            "score_counts": _score_counts(scores["score"]),
            "previous_score_counts": _score_counts(previous["score"]) if len(previous) else [],
        }
    )
    log.info("qualify %s shard %s: %d scored with model %s, %d sales-ready (%d handed over now, %d of them again "
             "after a rejection; %d held back after a rejection)", ctx.crm, ctx.shard, summary["scored"],
             model.version, summary["sales_ready"], handed_over, held["handed_over_again"],
             held["held_back_after_rejection"])
    return _record(ctx, "qualify", summary, shard=ctx.shard)


def _versioned_columns(frame: pd.DataFrame, model: Any) -> list[str]:
    """The inputs worth a version: what the rules read and what the predictive mapping reads."""
    # Not from predict.warehouse: that would load scikit-learn into every qualify task.
    from leadflow.predict.mapping import WAREHOUSE_MAPPING, load_mapping
    from leadflow.predict.versions import input_columns
    from leadflow.qualify.engine import describe_fields

    return input_columns(frame.columns, describe_fields(model) | set(load_mapping(WAREHOUSE_MAPPING).source_columns(
        with_id=False)))


def accounts(ctx: RunContext) -> dict[str, Any]:
    """The account view over every shard's scores (`leadflow.qualify.accounts`): per company its
    engaged leads, committee roles, best lead and company score, stored for the page and the
    company write. Before the scores are checked and the push planned, it holds back the
    handoffs that wait for a second engaged persona (`accounts.handoff_waits_for_second_persona`),
    so the sales-ready flag pushed is the final one."""
    from leadflow.accounts.store import save_accounts
    from leadflow.predict.rules import rules_for_run
    from leadflow.qualify.accounts import account_figures, account_view, wait_for_committee
    from leadflow.verdicts.sla import record_handoffs

    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "accounts"):
        model = rules_for_run(engine, ctx.crm, ctx.model_path).model
        scores = repo.load_scores(engine, ctx.crm)
        leads = repo.load_leads(engine, ctx.crm)[["record_id", "company_id", "lifecycle_stage"]]
        members = scores.merge(leads, on="record_id", how="left")
        members, waits = wait_for_committee(members, model, int(ctx.score_as_of.timestamp() * 1000))
        if waits:
            held = scores["sales_ready"].fillna(False).astype(bool).to_numpy() & \
                ~members["sales_ready"].fillna(False).astype(bool).to_numpy()
            repo.save_scores(engine, ctx.crm, ctx.run_id, members.loc[held], replace=False)
        if not ctx.dry_run and model.accounts.handoff_waits_for_second_persona:
            record_handoffs(engine, ctx.crm, ctx.run_id, members)
        view = account_view(members, model)
        save_accounts(engine, ctx.crm, ctx.run_id, view)
    summary.update({"accounts_scored": int(len(view)),
                    "accounts_engaged": int((view["engaged"] > 0).sum()) if len(view) else 0,
                    "committee_waits": waits, "accounts": account_figures(view, waits)})
    log.info("accounts %s: %d companies, %d with engaged leads, %d handoffs wait for a second persona",
             ctx.crm, summary["accounts_scored"], summary["accounts_engaged"], waits)
    return _record(ctx, "accounts", summary)


def push_accounts(ctx: RunContext) -> dict[str, Any]:
    """Write the account view to leadflow's own company properties (changed values only; nothing
    on a dry run, with push off, or for a CRM whose connector writes no companies)."""
    from leadflow.accounts.store import load_accounts
    from leadflow.accounts.write import push_accounts_view
    from leadflow.push.lease import LeaseBusy, current_holder, try_acquire

    engine = ctx.engine
    summary: dict[str, Any] = {"companies_written": 0}
    with _timed(summary, "push_accounts"):
        view = load_accounts(engine, ctx.crm)
        if ctx.dry_run or not ctx.push_enabled or view.empty:
            summary["company_writes"] = "skipped"
        else:
            connector = _connector(ctx)
            try:
                # A connector without company writes (Salesforce Leads have no Account), or a
                # mapping without owned company properties: the view stays in the warehouse.
                if not getattr(connector, "company_fields", ()):
                    summary["company_writes"] = f"not configured for {ctx.crm}"
                else:
                    # The run's push lease (its shards took it): one writer per CRM at a time.
                    if not try_acquire(engine, ctx.crm, ctx.run_id, ctx.settings.push.lease_ttl_s):
                        raise LeaseBusy(f"another push to {ctx.crm} is running ({current_holder(engine, ctx.crm)}); "
                                        "this one stops before writing and can be retried")
                    summary.update(push_accounts_view(engine, connector, ctx.crm, ctx.run_id, view))
                    summary["company_writes"] = "done"
            finally:
                connector.close()
    log.info("push_accounts %s: %d companies written (%s)", ctx.crm, summary["companies_written"],
             summary["company_writes"])
    return _record(ctx, "push_accounts", summary)


def _expand_counts(counts: Sequence[int]) -> pd.DataFrame | None:
    if not counts or sum(counts) == 0:
        return None
    return pd.DataFrame({"score": np.repeat(np.arange(len(counts), dtype=float), counts)})


def validate_scores(ctx: RunContext) -> dict[str, Any]:
    """Check the new scores (ranges, stages, reasons, drift against the previous scores) before
    anything is pushed."""
    from leadflow.quality import check_scores, failed_count, raise_if_failed, store_results

    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "validate_scores"):
        scores = repo.load_scores(engine, ctx.crm)
        previous = _expand_counts(repo.get_run_summary(engine, ctx.crm, ctx.run_id).get("previous_score_counts", []))
        results = check_scores(scores, previous, _quality_settings())
        store_results(engine, ctx.crm, ctx.run_id, list(results), now=ctx.now)
    summary["dq_failed_score_checks"] = failed_count(results)
    out = _record(ctx, "validate_scores", summary)
    raise_if_failed(results)
    return out


# --- push ---------------------------------------------------------------------------------------
def _changes(ctx: RunContext, shard: int | None, shards: int) -> tuple[Any, str | None]:
    """The diff of this shard (`push.diff.Diff`: changes and overrides) and the model version."""
    from leadflow.push.diff import diff_leads
    from leadflow.push.overrides import last_written, standing_overrides

    scores = repo.load_scores(ctx.engine, ctx.crm, shard, shards)
    current = repo.load_leads(ctx.engine, ctx.crm, shard=shard, shards=shards)
    if ctx.only_record_ids:
        scores = scores[scores["record_id"].isin(set(ctx.only_record_ids))]
    diff = diff_leads(scores, current, ctx.settings.diff(), last_written(ctx.engine, ctx.crm),
                      standing_overrides(ctx.engine, ctx.crm), now_ms=repo.now_ms())
    model_version = str(scores["model_version"].iloc[0]) if len(scores) else None
    return diff, model_version


def plan_push(ctx: RunContext) -> dict[str, Any]:
    """Compute the whole diff once: the dry-run preview, and the guard against a bad model that
    would rewrite too many records (a CRM's first push is exempt; `force` overrides)."""
    from leadflow.push.writer import preview

    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "plan_push"):
        diff, _ = _changes(ctx, None, 1)
        changes = diff.changes
        changed = int(changes["record_id"].nunique()) if len(changes) else 0
        scored = max(1, repo.count_scores(engine, ctx.crm))
        share = changed / scored
        summary.update({"changed": changed, "change_share": round(share, 4), "preview": preview(changes),
                        "overrides_planned": len(diff.overrides)})
    limit = ctx.settings.push.max_change_share
    # Until one push has finished, everything is new (a killed first push is still "first").
    first_push = not repo.has_finished_push(engine, ctx.crm)
    guard_tripped = share > limit and not first_push and not ctx.force and not ctx.dry_run and ctx.push_enabled
    summary["change_guard"] = "tripped" if guard_tripped else ("first push" if first_push else "ok")
    out = _record(ctx, "plan_push", summary)
    if guard_tripped:
        raise ChangeGuardError(
            f"the push would change {changed} of {scored} scored records ({share:.0%}), more than the "
            f"configured {limit:.0%}: nothing was written. Check the model and the data, then "
            "re-trigger the run with the Param force=true to push anyway."
        )
    return out


def push(ctx: RunContext) -> dict[str, Any]:
    """Send this shard's changed values to the CRM (nothing on a dry run or with push off)."""
    from leadflow.push.lease import try_acquire
    from leadflow.push.writer import push_changes

    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "push"):
        diff, model_version = _changes(ctx, ctx.shard, ctx.shards)
        changes = diff.changes
        summary["changed_in_shard"] = int(changes["record_id"].nunique()) if len(changes) else 0
        # Someone else's values the diff already knows: left alone, recorded for the report.
        summary["overrides"] = _record_diff_overrides(ctx, diff.overrides)
        if ctx.dry_run or not ctx.push_enabled:
            summary.update({"pushed": 0, "rejected": 0, "failed": 0, "unknown": 0, "write_calls": 0,
                            "dry_run": ctx.dry_run, "push_enabled": ctx.push_enabled})
        else:
            from leadflow.push.lease import LeaseBusy, current_holder

            # The lease belongs to the run: its shards share it; report() releases it.
            if not try_acquire(engine, ctx.crm, ctx.run_id, ctx.settings.push.lease_ttl_s):
                raise LeaseBusy(f"another push to {ctx.crm} is running ({current_holder(engine, ctx.crm)}); "
                                "this one stops before writing and can be retried")
            connector = _connector(ctx)
            try:
                connector.ensure_schema()
                with progress.track(f"push {ctx.crm}", total=summary["changed_in_shard"],
                                    unit="records") as advance:
                    outcome = push_changes(engine, connector, ctx.crm, ctx.run_id, changes, model_version,
                                           ctx.settings.push.writer(), on_batch=advance)
            finally:
                # Every call the push made: writes, the pre-write reads, read-backs, schema checks.
                summary["push_api_requests"] = int(dict(getattr(connector, "stats", {}) or {}).get("requests", 0))
                connector.close()
            summary["overrides"] += outcome.overridden
            summary.update({"pushed": outcome.pushed, "rejected": outcome.rejected, "failed": outcome.failed,
                            "unknown": outcome.unknown, "write_calls": outcome.write_calls, "dry_run": False,
                            "skipped_unchanged": outcome.skipped, "prewrite_checks": outcome.prewrite_checks,
                            "push_enabled": True,
                            # ids (first 100 per shard) so the report lists what needs a look
                            "rejected_records": list(outcome.rejected_ids),
                            "failed_records": list(outcome.failed_ids)})
    log.info("push %s shard %s: %d records changed, %d pushed, %d rejected (dry run: %s)", ctx.crm,
             ctx.shard, summary["changed_in_shard"], summary["pushed"], summary["rejected"], ctx.dry_run)
    return _record(ctx, "push", summary, shard=ctx.shard)


def _record_diff_overrides(ctx: RunContext, overrides: pd.DataFrame) -> int:
    """Store the new overrides the diff found (someone else's values leadflow leaves alone);
    returns how many it found, standing ones included."""
    from leadflow.push.overrides import overrides_frame_rows, record_overrides

    rows = overrides_frame_rows(overrides)
    if rows:
        with ctx.engine.begin() as conn:
            record_overrides(conn, ctx.crm, ctx.run_id, rows, repo.now_ms())
    log.info("push %s shard %s: %d shared values left to their owners (overrides), %d of them new", ctx.crm,
             ctx.shard, len(overrides), len(rows))
    return len(overrides)


# --- report -------------------------------------------------------------------------------------
REPORT_KEYS = ("pulled", "scored", "changed", "pushed", "rejected", "overrides")


def report(ctx: RunContext, status: str | None = None) -> dict[str, Any]:
    """Close the run: release its push lease, store the merged summary, return it."""
    from leadflow.push.lease import release

    release(ctx.engine, ctx.crm, ctx.run_id)
    _sla(ctx)
    summary = repo.refresh_run_summary(ctx.engine, ctx.crm, ctx.run_id)
    if status is None:
        status = "warning" if summary.get("warning") else "success"
    repo.finish_run(ctx.engine, ctx.crm, ctx.run_id, status)
    out = run_summary(ctx.crm, ctx.run_id, summary)
    out["status"] = status
    _write_report(ctx, out)
    return out


def _sla(ctx: RunContext) -> None:
    """The SLA as of this run (`leadflow.verdicts.sla`) into the run's summary, and an alert
    when more sales-ready leads sit ignored than `handoff.alert_ignored_over`. Measuring must
    not keep the run from closing: a failure is logged and becomes the run's warning."""
    from leadflow.alerts import send
    from leadflow.predict.rules import rules_for_run
    from leadflow.verdicts.sla import ignored_alert, sla_figures

    summary: dict[str, Any] = {}
    try:
        figures = sla_figures(ctx.engine, ctx.crm, int(ctx.now.timestamp() * 1000), run_id=ctx.run_id)
        summary["sla"] = figures
        handoff = rules_for_run(ctx.engine, ctx.crm, ctx.model_path).model.handoff
        alert = ignored_alert(figures, handoff.alert_ignored_over)
    except Exception:
        log.exception("SLA figures for %s run %s not measured", ctx.crm, ctx.run_id)
        summary["warning"] = "SLA figures not measured (see the report task's log)"
        alert = None
    if alert is not None:
        summary["sla_alert"] = alert
        counts = {k: figures[k] for k in ("handed_over", "accepted", "converted", "rejected", "ignored", "pending")}
        channels = send({"title": f"leadflow SLA: {ctx.crm} run {ctx.run_id}", "text": alert, "kind": "sla",
                         "crm": ctx.crm, "run_id": ctx.run_id, "summary": counts})
        log.warning("SLA alert for %s (%s): %s", ctx.crm, ", ".join(channels) or "no alert channel configured", alert)
    _record(ctx, "sla", summary)


def _write_report(ctx: RunContext, summary: dict[str, Any]) -> None:
    try:
        from leadflow.report import write_run_report
    except ImportError:
        return
    from leadflow.warehouse.db import var_dir

    try:
        path = write_run_report(ctx.engine, ctx.crm, ctx.run_id, var_dir() / "reports")
    except Exception:  # the run is done; a rendering problem must not fail it
        log.exception("run report for %s not written", ctx.run_id)
        return
    log.info("run report written to %s", path)


def run_summary(crm: str, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"crm": crm, "run_id": run_id}
    for key in REPORT_KEYS:
        out[key] = int(summary.get(key, 0) or 0)
    out.update({k: v for k, v in summary.items() if k not in out})
    return out


STEPS = ("extract", "enrich", "validate", "qualify", "accounts", "validate_scores", "plan_push", "push",
         "push_accounts")


def run_all(ctx: RunContext, on_step: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole pipeline in-process, unsharded (the CLI's `leadflow run`); `on_step(name,
    summary)` is called as each step ends (the CLI prints a line per step)."""
    steps = {"extract": extract, "enrich": enrich, "validate": validate, "qualify": qualify, "accounts": accounts,
             "validate_scores": validate_scores, "plan_push": plan_push, "push": push,
             "push_accounts": push_accounts}
    try:
        for name in STEPS:
            out = steps[name](ctx)
            if on_step is not None:
                on_step(name, out)
    except Exception:
        fail_run(ctx.engine, ctx.crm, ctx.run_id)
        raise
    return report(ctx)


def fail_run(engine: Engine, crm: str, run_id: str) -> None:
    """Close a run that stopped on an error: its summary so far, status `failed` (so `leadflow
    report`, the Leadflow page and the run report show a failure, not a run still going)."""
    repo.refresh_run_summary(engine, crm, run_id)
    repo.finish_run(engine, crm, run_id, "failed")


def train(ctx: RunContext) -> dict[str, Any]:
    """Retrain the predictive model from the warehouse's won/lost history (champion/challenger)."""
    from leadflow.predict.warehouse import train_from_warehouse

    return train_from_warehouse(ctx.engine, ctx.crm, now_ms=int(ctx.now.timestamp() * 1000))


def default_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
