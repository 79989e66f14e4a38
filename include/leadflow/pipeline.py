"""One function per DAG step. Each takes a `RunContext`, calls the package that does the step's
work, records the step's small JSON-able summary (counts and durations) in the warehouse and
returns it (the DAG passes it on as XCom).

Order: extract -> enrich (per shard) -> validate (per shard) -> validate_gate -> qualify (per
shard) -> accounts -> validate_scores -> plan_push -> push (per shard) -> push_accounts -> report.
Nothing here needs a running Airflow: the CLI (`leadflow run`) calls the same functions in the
same order, unsharded.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
from sqlalchemy import Engine

from leadflow import alerts, progress
from leadflow.accounts.store import hold_for_committee, load_accounts, save_accounts
from leadflow.accounts.write import push_accounts_view
from leadflow.connections import get_connection
from leadflow.crm.base import CrmBudgetExhausted, CrmError
from leadflow.crm.registry import get_connector
from leadflow.enrich.leads import enrich_and_store
from leadflow.enrich.reference import load_reference
from leadflow.enrich.store import apply_enrichment, load_enrichment
from leadflow.predict.mapping import WAREHOUSE_MAPPING, load_mapping
from leadflow.predict.rules import rules_for_run
from leadflow.prefetch import prefetched
from leadflow.predict.versions import input_columns, record_versions
from leadflow.push.diff import Diff, current_columns, desired_columns, diff_leads
from leadflow.push.lease import LeaseBusy, current_holder, release, try_acquire
from leadflow.push.overrides import last_written, overrides_frame_rows, record_overrides, standing_overrides
from leadflow.push.plan import PlanTally
from leadflow.push.writer import PushOutcome, Send, prepare_push
from leadflow.qualify import QualificationModel, score_leads
from leadflow.qualify.accounts import account_figures, account_view
from leadflow.qualify.engine import describe_fields
from leadflow.qualify.frame import build_qualify_frame
from leadflow.qualify.handoff import PREVIOUS_COLUMNS, settle_handoffs
from leadflow.quality.change_guard import ChangeGuard, ChangeGuardError
from leadflow.quality.gx_runtime import get_runtime
from leadflow.quality.gates import check_lead_rows, check_new_scores, gate_leads, score_check_columns
from leadflow.quality.psi import score_counts
from leadflow.quality.quarantine import quarantined_ids
from leadflow.quality.results import failed_count, raise_if_failed
from leadflow.report import write_run_report
from leadflow.runtime import keep_freed_memory, objects_frozen, peak_rss_mib
from leadflow.settings import PipelineSettings, load_pipeline_settings
from leadflow.shared_limit import connector_limits
from leadflow.verdicts.read import load_events, load_handoffs, read_verdicts
from leadflow.verdicts.sla import ignored_alert, record_handoffs, sla_figures
from leadflow.warehouse import repo
from leadflow.warehouse.db import ensure_schema, get_engine, var_dir
from leadflow.warehouse.population import open_leads
from leadflow.warehouse.pull import PullTally, land_pulled_page, pull_since

__all__ = ["ChangeGuardError", "RunContext", "STEPS", "accounts", "default_run_id", "enrich", "extract",
           "fail_run", "plan_push", "push", "push_accounts", "qualify", "record_failure", "report", "run_all",
           "run_summary", "train", "validate", "validate_gate",
           "validate_scores"]  # ChangeGuardError: dag_support and the tests import it here

log = logging.getLogger(__name__)

# Pull pages fetched ahead of the one being landed (`leadflow.prefetch`).
PULL_PAGES_AHEAD = 2


@dataclass
class RunContext:
    crm: str
    run_id: str
    dry_run: bool = False
    full_refresh: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # When the run started, if before `now`: a DAG run's tasks each have their own `now`, but
    # score as of one day, also when the run crosses midnight.
    started: datetime | None = None
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
    # The steps run one after the other in this process with nothing between them (`run_all`): a
    # step may hand on what it read or made instead of the next step reading it again.
    one_process: bool = False
    rate_share: float = 1.0  # this task's share of the CRM's rate limit (parallel shards), when not shared
    settings: PipelineSettings = field(default_factory=load_pipeline_settings)
    _engine: Engine | None = field(default=None, repr=False)
    # The unsharded diff plan_push made, for the push of the same in-process run (`run_all`)
    # to start writing at once instead of diffing again; tasks of a DAG run never share it.
    _planned: tuple[Diff, str | None] | None = field(default=None, repr=False)
    # In one process: the open leads and their enrichment, read once for enrich, validate and
    # qualify (`_open_leads`, `_with_enrichment`); dropped when qualify is done with them.
    _kept_reads: dict[str, Any] = field(default_factory=dict, repr=False)

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
        """Scores are computed as of the day the run started, so that re-runs on the same day
        agree and a run's steps agree with each other."""
        start = self.started if self.started is not None else self.now
        return start.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000)


@contextmanager
def _timed(summary: dict[str, Any], key: str) -> Iterator[Callable[[], None]]:
    """Time the block into `summary["durations_s"][key]`. The objects that exist when it starts
    (Airflow's, Great Expectations' and pandas' modules, what earlier steps kept) stay out of the
    garbage collector's passes while it runs (`runtime.objects_frozen`): a full pass over them
    took 0.3-0.5 s at 100,000 leads, a few times per step, and in the pull and the push the
    calls waited for it. Yields `freeze`, for what the block makes that lives as long."""
    started = time.perf_counter()
    try:
        with objects_frozen() as freeze:
            yield freeze
    finally:
        summary.setdefault("durations_s", {})[key] = round(time.perf_counter() - started, 3)


def _connector(ctx: RunContext):
    """The run's CRM connector: rate limits shared through the warehouse, or this task's share."""
    options = connector_limits(ctx.engine, ctx.settings.rate_limit, ctx.rate_share)
    return get_connector(ctx.crm, ctx.connection or get_connection(ctx.conn_id), **options)


def _api_requests(connector: Any) -> int:
    return int(dict(getattr(connector, "stats", {}) or {}).get("requests", 0))


def _take_lease(ctx: RunContext) -> None:
    """The run's push lease (its shards share it; report() releases it): one writer per CRM."""
    if not try_acquire(ctx.engine, ctx.crm, ctx.run_id, ctx.settings.push.lease_ttl_s):
        raise LeaseBusy(f"another push to {ctx.crm} is running ({current_holder(ctx.engine, ctx.crm)}); "
                        "this one stops before writing and can be retried")


def _record(ctx: RunContext, step: str, summary: dict[str, Any], shard: int | None = None) -> dict[str, Any]:
    # The task's memory, keyed by task so that shards and steps are kept apart, not added up.
    summary.setdefault("peak_rss_mib", {})[step if shard is None else f"{step}[{shard}]"] = peak_rss_mib()
    repo.record_step(ctx.engine, ctx.crm, ctx.run_id, step, summary, shard=shard)
    return {k: v for k, v in summary.items() if k != "preview"}  # XCom gets counts only


# --- extract ------------------------------------------------------------------------------------
def extract(ctx: RunContext) -> dict[str, Any]:
    """Pull leads changed since the watermark (all leads on full refresh) into the warehouse.

    Each page is committed with its watermark (`warehouse.pull`). If the CRM's API budget runs
    out, the pages landed so far stay, the watermark stays where they end, and the next run
    resumes there.
    """
    engine = ctx.engine
    repo.start_run(engine, ctx.crm, ctx.run_id, ctx.dry_run)
    summary: dict[str, Any] = {}
    tally = PullTally()
    connector = _connector(ctx)
    try:
        with _timed(summary, "extract"), progress.track(f"pull {ctx.crm}", unit="leads") as advance:
            try:
                pages = connector.pull(pull_since(engine, ctx.crm, ctx.full_refresh, ctx.since))
                # The next pages are fetched while this one lands: the API's allowance is not left
                # unused while the warehouse writes.
                for page in prefetched(pages, PULL_PAGES_AHEAD, name=f"leadflow-pull-{ctx.crm}"):
                    land_pulled_page(engine, ctx.crm, ctx.run_id, page, tally)
                    advance(len(page.leads))
            except CrmBudgetExhausted as exc:
                summary["warning"] = f"API budget exhausted after {tally.pulled} leads; resumes next run ({exc})"
                summary["budget_stopped"] = True  # the run's alert says so (leadflow.alerts)
                log.warning("extract %s: %s", ctx.crm, summary["warning"])
        complete = "warning" not in summary  # an exhausted budget is kept for the pull that resumes
        unseen = repo.mark_unseen_deleted(engine, ctx.crm, ctx.run_id) if ctx.full_refresh and complete else 0
        if complete:
            _verdicts(ctx, connector)
    finally:
        stats = dict(getattr(connector, "stats", {}) or {})
        connector.close()
    summary.update(tally.summary(unseen), full_refresh=ctx.full_refresh, extract_api=stats)
    log.info("extract %s: %d leads (%d quarantined for unstorable values), %d companies, %d input issues in "
             "%d pages; %d archived or deleted, %d merged away", ctx.crm, tally.pulled, len(tally.held),
             tally.companies, tally.issues, tally.pages, tally.deleted, tally.merged)
    return _record(ctx, "extract", summary)


def _verdicts(ctx: RunContext, connector: Any) -> None:
    """Sales' verdicts on the handed-over leads (`verdicts.read`), recorded as a step of their own.
    Read here, before qualify, while every handoff is still in the scores; a CRM error leaves
    them to the next run with a warning instead of failing the pulled run."""
    summary: dict[str, Any] = {}
    calls = _api_requests(connector)
    with _timed(summary, "verdicts"):
        try:
            summary.update(read_verdicts(ctx.engine, connector, ctx.crm, ctx.run_id,
                                         rules_for_run(ctx.engine, ctx.crm, ctx.model_path).model.handoff,
                                         ctx.now_ms))
        except CrmError as exc:
            summary["warning"] = f"sales' verdicts not read, next run tries again ({type(exc).__name__})"
            log.warning("verdicts %s: %s", ctx.crm, summary["warning"])
    summary["verdicts_api_requests"] = _api_requests(connector) - calls
    _record(ctx, "verdicts", summary)


def _kept(ctx: RunContext, key: str, read: Callable[[], Any]) -> Any:
    """`read()`, or in one process (`one_process`) its first result, kept on the context."""
    if not ctx.one_process:
        return read()
    if key not in ctx._kept_reads:
        ctx._kept_reads[key] = read()
    return ctx._kept_reads[key]


def _open_leads(ctx: RunContext) -> tuple[pd.DataFrame, int]:
    """`open_leads` of the context's shard. In one process enrich, validate and qualify read the
    same leads (no step between them writes any): read once, a copy handed to each, which may add
    its columns (copy on write: the data is shared until one changes it)."""
    leads, owned = _kept(ctx, "open_leads", lambda: open_leads(ctx.engine, ctx.crm, ctx.shard, ctx.shards))
    return leads.copy(deep=False), owned


def _with_enrichment(ctx: RunContext, leads: pd.DataFrame) -> pd.DataFrame:
    """`leads` with the enrich step's firmographics (`with_enrichment`); in one process the rows
    enrich stored, as read back (`store_and_read_back`), for validate and qualify."""
    stored = _kept(ctx, "enrichment", lambda: load_enrichment(ctx.engine, ctx.crm, ctx.shard, ctx.shards))
    return apply_enrichment(leads, stored)


# --- enrich -------------------------------------------------------------------------------------
# Shares of the coverage report: per shard they would be summed when the run's summary combines
# the shards, so a sharded task records the counts only.
_COVERAGE_SHARES = ("match_rate",)


def enrich(ctx: RunContext) -> dict[str, Any]:
    """Resolve every open lead's (of this shard) company and firmographics (cache -> reference
    file -> API). Shards share the cache: its writes are idempotent upserts."""
    keep_freed_memory()  # vectorised step: reuse freed arrays (leadflow.runtime)
    summary: dict[str, Any] = {}
    with _timed(summary, "enrich"):
        leads, _ = _open_leads(ctx)
        result = enrich_and_store(ctx.engine, ctx.crm, ctx.run_id, leads, repo.load_companies(ctx.engine, ctx.crm),
                                  ctx.settings.enrichment, ctx.now, keep_stored=ctx.one_process)
        if result.stored is not None:  # every open lead's row: what validate and qualify would read
            ctx._kept_reads["enrichment"] = result.stored
    summary.update(result.summary(), enrichment_lookups=dict(result.lookups))
    if ctx.shard is not None:
        summary["coverage"] = _coverage_counts(summary["coverage"])
    log.info("enrich %s shard %s: %d of %d leads matched to a company", ctx.crm, ctx.shard, summary["enriched"],
             len(leads))
    return _record(ctx, "enrich", summary, shard=ctx.shard)


def _coverage_counts(coverage: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in coverage.items() if k not in _COVERAGE_SHARES}
    out["fields"] = {name: {k: v for k, v in field.items() if k != "filled"}
                     for name, field in coverage.get("fields", {}).items()}
    return out


# --- validate -----------------------------------------------------------------------------------
GATE_FIGURES = "_gate_figures"  # the validate shards' inputs of the batch gate (they add up)


def validate(ctx: RunContext) -> dict[str, Any]:
    """Row checks of the open leads (of this shard): failing leads are quarantined. The batch
    gate's figures are recorded for `validate_gate`."""
    keep_freed_memory()  # vectorised step: reuse freed arrays (leadflow.runtime)
    summary: dict[str, Any] = {}
    with _timed(summary, "validate"):
        leads, skipped_owned = _open_leads(ctx)
        rows, figures = check_lead_rows(ctx.engine, ctx.crm, ctx.run_id, _with_enrichment(ctx, leads), ctx.now)
    # What qualify leaves out: the row-check failures and the leads held at extract for values
    # the warehouse could not store (those pass the row checks with the field cleared).
    quarantined = int(leads["record_id"].isin(quarantined_ids(ctx.engine, ctx.crm)).sum())
    summary.update(total=int(len(leads) + skipped_owned), validated=int(len(leads)), quarantined=quarantined,
                   skipped_owned=skipped_owned, **{GATE_FIGURES: figures})
    log.info("validate %s shard %s: %d leads, %d quarantined, %d failed the row checks",
             ctx.crm, ctx.shard, len(leads), quarantined, rows.failed_row_count)
    out = _record(ctx, "validate", summary, shard=ctx.shard)
    out.pop(GATE_FIGURES)  # the gate reads them from the warehouse, every shard's added up
    return out


def validate_gate(ctx: RunContext) -> dict[str, Any]:
    """The batch gate over every shard's validated leads (quarantine share, duplicate ids,
    freshness, enrichment coverage) from the figures the validate shards recorded, before
    anything is scored; a failed gate fails the run after it is recorded."""
    summary: dict[str, Any] = {}
    with _timed(summary, "validate_gate"):
        figures = repo.step_summary(ctx.engine, ctx.crm, ctx.run_id, "validate").get(GATE_FIGURES, {})
        batch, docs = gate_leads(ctx.engine, ctx.crm, ctx.run_id, figures, ctx.now)
    summary.update(dq_failed_checks=failed_count(batch), data_docs=str(docs))
    log.info("validate_gate %s: %d batch checks failed", ctx.crm, summary["dq_failed_checks"])
    out = _record(ctx, "validate_gate", summary)
    raise_if_failed(batch)  # after recording: the run report shows what failed
    return out


# --- qualify ------------------------------------------------------------------------------------
def qualify(ctx: RunContext) -> dict[str, Any]:
    """Score every open, unquarantined lead (of this shard) with the configured model."""
    keep_freed_memory()  # vectorised step: reuse freed arrays (leadflow.runtime)
    engine = ctx.engine
    summary: dict[str, Any] = {}
    with _timed(summary, "qualify"):
        rules = rules_for_run(engine, ctx.crm, ctx.model_path, publish=not ctx.dry_run)  # the published champion
        model = rules.model
        # Only the columns read below: the handoffs' and the score (for the drift check).
        previous = repo.load_scores(engine, ctx.crm, ctx.shard, ctx.shards, columns=[*PREVIOUS_COLUMNS, "score"])
        leads, _ = _open_leads(ctx)
        leads = leads[~leads["record_id"].isin(quarantined_ids(engine, ctx.crm))]
        if ctx.only_record_ids:
            leads = leads[leads["record_id"].isin(set(ctx.only_record_ids))]
        enriched = _with_enrichment(ctx, leads.reset_index(drop=True))
        ctx._kept_reads.clear()  # no later step reads them
        frame = build_qualify_frame(enriched, repo.load_companies(engine, ctx.crm))
        predictive, champion = _predictive(engine, ctx.crm, model, frame)
        scores = score_leads(frame, model, ctx.score_as_of,
                             predictive=None if predictive is None else predictive["score"].astype(float),
                             predictive_factors=None if predictive is None else predictive["factors"])
        scores["predictive_version"] = champion  # which published models scored these leads
        scores["rules_version"] = rules.version
        scores, handoffs = settle_handoffs(scores, previous, leads, load_events(engine, ctx.crm),
                                           load_handoffs(engine, ctx.crm), model.handoff.rehandoff_min_score_gain)
        repo.save_scores(engine, ctx.crm, ctx.run_id, scores, ctx.shard, ctx.shards, replace=not ctx.only_record_ids)
        # A dry run hands nothing to sales; a lead that may wait for its buying committee is
        # recorded by the accounts step, which sees every shard's leads.
        if not ctx.dry_run and not model.accounts.handoff_waits_for_second_persona:
            record_handoffs(engine, ctx.crm, ctx.run_id, scores)
        # The inputs as scored now, kept when they changed: training takes them as they were.
        record_versions(engine, ctx.crm, ctx.run_id, frame, _versioned_columns(frame, model),
                        int(ctx.score_as_of.timestamp() * 1000), ctx.shard, ctx.shards)
    summary.update(
        scored=int(len(scores)), scored_as_of=ctx.score_as_of.date().isoformat(), model_version=model.version,
        rules_version=rules.version,
        proposed_stages={str(k): int(v) for k, v in scores["stage"].value_counts().items()},
        disqualified=int(scores["disqualification_reason"].notna().sum()), sales_ready=int(scores["sales_ready"].sum()),
        # handed_over: sales-ready now, not before (new for sales); held_back_after_rejection,
        # handed_over_again (within handed_over)
        **handoffs,
        # Shards add up; validate_scores compares the two distributions (drift).
        score_counts=score_counts(scores["score"]),
        previous_score_counts=score_counts(previous["score"]) if len(previous) else [],
    )
    log.info("qualify %s shard %s: %d scored with model %s, %d sales-ready (%d handed over now, %d of them again "
             "after a rejection; %d held back after a rejection)", ctx.crm, ctx.shard, summary["scored"],
             model.version, summary["sales_ready"], handoffs["handed_over"], handoffs["handed_over_again"],
             handoffs["held_back_after_rejection"])
    return _record(ctx, "qualify", summary, shard=ctx.shard)


def _predictive(engine: Engine, crm: str, model: QualificationModel,
                frame: pd.DataFrame) -> tuple[pd.DataFrame | None, str | None]:
    """The published champion's 0-100 `score` and top `factors` per lead, and its version,
    when the qualification model uses one."""
    predictive = getattr(model, "predictive", None)
    if not predictive or not getattr(predictive, "enabled", False) or frame.empty:
        return None, None
    # Imported here, not at the top: these load scikit-learn (about 1.3 s, most of a small run's
    # qualify task), which a model without the predictive score never needs.
    from leadflow.predict.score import score_frame
    from leadflow.predict.store import load_champion
    from leadflow.predict.warehouse import prepare_leads

    champion = load_champion(engine, crm)
    if champion is None:
        log.info("qualify %s: predictive score enabled but no trained model yet", crm)
        return None, None
    return score_frame(champion, prepare_leads(frame, champion.mapping))[["score", "factors"]], champion.version


def _versioned_columns(frame: pd.DataFrame, model: QualificationModel) -> list[str]:
    """The inputs worth a version: what the rules read and what the predictive mapping reads."""
    mapped = load_mapping(WAREHOUSE_MAPPING).source_columns(with_id=False)
    return input_columns(frame.columns, describe_fields(model) | set(mapped))


# --- accounts -----------------------------------------------------------------------------------
def accounts(ctx: RunContext) -> dict[str, Any]:
    """The account view over every shard's scores (`leadflow.qualify.accounts`): per company its
    engaged leads, committee roles, best lead and company score, stored for the page and the
    company write. Before the scores are checked and the push planned, it holds back the
    handoffs that wait for a second engaged persona (`accounts.handoff_waits_for_second_persona`),
    so the sales-ready flag pushed is the final one."""
    summary: dict[str, Any] = {}
    with _timed(summary, "accounts"):
        model = rules_for_run(ctx.engine, ctx.crm, ctx.model_path).model
        members, waits = hold_for_committee(ctx.engine, ctx.crm, ctx.run_id, model,
                                            int(ctx.score_as_of.timestamp() * 1000))
        if not ctx.dry_run and model.accounts.handoff_waits_for_second_persona:
            record_handoffs(ctx.engine, ctx.crm, ctx.run_id, members)
        view = account_view(members, model)
        save_accounts(ctx.engine, ctx.crm, ctx.run_id, view)
    summary.update(accounts_scored=int(len(view)), committee_waits=waits,
                   accounts_engaged=int((view["engaged"] > 0).sum()) if len(view) else 0,
                   accounts=account_figures(view, waits))
    log.info("accounts %s: %d companies, %d with engaged leads, %d handoffs wait for a second persona",
             ctx.crm, summary["accounts_scored"], summary["accounts_engaged"], waits)
    return _record(ctx, "accounts", summary)


def push_accounts(ctx: RunContext) -> dict[str, Any]:
    """Write the account view to leadflow's own company properties (changed values only; nothing
    on a dry run, with push off, or for a CRM whose connector writes no companies)."""
    summary: dict[str, Any] = {"companies_written": 0}
    with _timed(summary, "push_accounts"):
        view = load_accounts(ctx.engine, ctx.crm)
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
                    _take_lease(ctx)  # the run's shards took it already
                    summary.update(push_accounts_view(ctx.engine, connector, ctx.crm, ctx.run_id, view),
                                   company_writes="done")
            finally:
                connector.close()
    log.info("push_accounts %s: %d companies written (%s)", ctx.crm, summary["companies_written"],
             summary["company_writes"])
    return _record(ctx, "push_accounts", summary)


# --- validate_scores ----------------------------------------------------------------------------
def validate_scores(ctx: RunContext) -> dict[str, Any]:
    """Check the new scores (ranges, stages, reasons, drift against the previous scores) before
    anything is pushed."""
    summary: dict[str, Any] = {}
    with _timed(summary, "validate_scores"):
        previous = repo.get_run_summary(ctx.engine, ctx.crm, ctx.run_id).get("previous_score_counts", [])
        scores = repo.load_scores(ctx.engine, ctx.crm, columns=score_check_columns())
        results = check_new_scores(ctx.engine, ctx.crm, ctx.run_id, scores, previous, ctx.now)
    summary["dq_failed_score_checks"] = failed_count(results)
    out = _record(ctx, "validate_scores", summary)
    raise_if_failed(results)
    return out


# --- push ---------------------------------------------------------------------------------------
def _changes(ctx: RunContext, shard: int | None, shards: int,
             standing: dict[tuple[str, str], str | None] | None = None) -> tuple[Diff, str | None]:
    """The diff of this shard (`push.diff`: changes and overrides) and the model version."""
    scores = repo.load_scores(ctx.engine, ctx.crm, shard, shards, columns=desired_columns())
    current = repo.load_leads(ctx.engine, ctx.crm, shard=shard, shards=shards, columns=current_columns())
    if ctx.only_record_ids:
        scores = scores[scores["record_id"].isin(set(ctx.only_record_ids))]
    # A shard's own records' last writes only (every record's would be most of a push shard's
    # memory at 1,000,000 leads); one query for all when there is one shard.
    written = last_written(ctx.engine, ctx.crm, scores["record_id"].tolist() if shards > 1 else None)
    if standing is None:
        standing = standing_overrides(ctx.engine, ctx.crm)
    diff = diff_leads(scores, current, ctx.settings.diff(), written, standing, now_ms=repo.now_ms())
    model_version = str(scores["model_version"].iloc[0]) if len(scores) else None
    return diff, model_version


# Records diffed at a time by plan_push (a push shard's share of 1,000,000 at 8 shards).
PLAN_RECORDS_PER_PART = 125_000


def plan_push(ctx: RunContext) -> dict[str, Any]:
    """Compute the whole diff (in parts): the dry-run preview, and the guard against a bad model that
    would rewrite too many records (`quality.change_guard`: a CRM's first push is exempt; `force`
    overrides)."""
    summary: dict[str, Any] = {}
    with _timed(summary, "plan_push"):
        scored = repo.count_scores(ctx.engine, ctx.crm)
        # In parts split as the push shards split the records (`push.plan`): the whole diff of a
        # first push of 1,000,000 records is several GB.
        parts = max(1, -(-scored // PLAN_RECORDS_PER_PART))
        standing = standing_overrides(ctx.engine, ctx.crm)
        plan = PlanTally()
        for part in range(parts):
            diff = _changes(ctx, part if parts > 1 else None, parts, standing)
            plan.add(diff[0])
        ctx._planned = diff if parts == 1 and ctx.one_process else None
        guard = ChangeGuard(
            changed=plan.changed, scored=scored, limit=ctx.settings.push.max_change_share,
            # Until one push has finished, everything is new (a killed first push is still "first").
            first_push=not repo.has_finished_push(ctx.engine, ctx.crm),
            exempt=ctx.force or ctx.dry_run or not ctx.push_enabled)
        summary.update(changed=guard.changed, change_share=round(guard.share, 4), preview=plan.preview(),
                       overrides_planned=plan.overrides)
    summary["change_guard"] = guard.state
    out = _record(ctx, "plan_push", summary)
    guard.raise_if_tripped()
    return out


# The push diffs a first part of its shard, about this many records, alone, and writes it while
# the rest is diffed and prepared: diffing a whole shard first kept the CRM idle for seconds (5 s
# at 100,000 records). One part boundary only: each costs a drain of the calls in flight.
PUSH_FIRST_PART = 10_000


def push_first_part(shard: int | None, shards: int, records: int) -> tuple[int, int] | None:
    """The (shard, shards) selection of the first part a push shard writes, at most about
    `PUSH_FIRST_PART` of its records; None when the shard is that small. `shard_filter` selects by
    `shard_key` modulo the shard count, so sub-shard s of S*K holds records of shard s of S only."""
    per_shard = -(-records // max(1, shards))
    parts = -(-per_shard // PUSH_FIRST_PART)
    if parts <= 1:
        return None
    return (shard or 0, max(1, shards) * parts)


def _push_connector(ctx: RunContext):
    """The push's lease and connector, the CRM's schema checked (leadflow's properties exist)."""
    _take_lease(ctx)
    connector = _connector(ctx)
    try:
        connector.ensure_schema()
    except BaseException:
        connector.close()
        raise
    return connector


def _diffs(ctx: RunContext) -> Iterator[tuple[Diff, str | None]]:
    """This shard's diff in two parts when it is large (`push_first_part`): the first part's, then
    the rest's; else in one. The diff is the one plan_push kept (`one_process`), else made here: the
    first part's alone, then the whole shard's (on `push`'s prefetching thread, while the first
    part is written), less the first part's records."""
    planned, ctx._planned = (ctx._planned if ctx.shard is None else None), None
    first = push_first_part(ctx.shard, ctx.shards, repo.count_scores(ctx.engine, ctx.crm))
    if planned is not None:
        whole, model_version = planned
    else:
        standing = standing_overrides(ctx.engine, ctx.crm)
        if first is None:
            yield _changes(ctx, ctx.shard, ctx.shards, standing)
            return
        yield _changes(ctx, *first, standing)
        whole, model_version = _changes(ctx, ctx.shard, ctx.shards, standing)
    if first is None:
        yield whole, model_version
        return
    part, parts = first
    ids = pd.unique(pd.concat([whole.changes["record_id"], whole.overrides["record_id"]]))
    in_first = {r for r in ids if repo.shard_key(r) % parts == part}

    def rows(frame: pd.DataFrame, wanted: bool) -> pd.DataFrame:
        return frame[frame["record_id"].isin(in_first) == wanted]

    if planned is not None:
        yield Diff(rows(whole.changes, True), rows(whole.overrides, True)), model_version
    rest = Diff(rows(whole.changes, False), rows(whole.overrides, False))
    del whole, planned  # not two copies of a large shard's diff while the rest is written
    yield rest, model_version


def _prepared(ctx: RunContext, connector: Future | None) -> Iterator[tuple[int, int, Send | None]]:
    """Per part of this shard's diff (`_diffs`): records changed, overrides found (recorded for
    the report: someone else's values left alone), and its prepared write (`prepare_push`; None
    on a dry run or with push off)."""
    for diff, model_version in _diffs(ctx):
        changed = int(diff.changes["record_id"].nunique()) if len(diff.changes) else 0
        overrides = _record_diff_overrides(ctx, diff.overrides)
        send = None
        if connector is not None:
            send = prepare_push(ctx.engine, connector.result(), ctx.crm, ctx.run_id, diff.changes, model_version,
                                ctx.settings.push.writer())
        yield changed, overrides, send


def push(ctx: RunContext) -> dict[str, Any]:
    """Send this shard's changed values to the CRM (nothing on a dry run or with push off), a large
    shard in two parts (`_diffs`). The parts are diffed and their writes prepared on another
    thread (`_prepared`), the second while the first is sent; the connector checks the CRM's
    schema while the first is diffed. The calls are made on this thread, one part after the other."""
    summary: dict[str, Any] = {"changed_in_shard": 0, "overrides": 0}
    writing = not ctx.dry_run and ctx.push_enabled
    outcome = PushOutcome()
    _ = ctx.engine  # opened here, not by two threads below at once
    with _timed(summary, "push") as freeze, ThreadPoolExecutor(1, thread_name_prefix="leadflow-push-connect") as pool:
        ready = pool.submit(_push_connector, ctx) if writing else None
        parts = prefetched(_prepared(ctx, ready), depth=1, name="leadflow-push-prepare")
        try:
            with progress.track(f"push {ctx.crm}", unit="records") as advance:
                for changed, overrides, send in parts:
                    summary["changed_in_shard"] += changed
                    summary["overrides"] += overrides
                    if send is not None:
                        freeze()  # the part's plan, made on the other thread, lives through its calls
                        outcome.add(send(advance))
        finally:
            parts.close()
            if ready is not None and ready.exception() is None:
                # Every call the push made: writes, the pre-write reads, read-backs, schema checks.
                summary["push_api_requests"] = _api_requests(ready.result())
                ready.result().close()
        if not writing:
            summary.update(pushed=0, rejected=0, failed=0, unknown=0, write_calls=0, dry_run=ctx.dry_run,
                           push_enabled=ctx.push_enabled)
        else:
            summary["overrides"] += outcome.overridden
            summary.update(pushed=outcome.pushed, rejected=outcome.rejected, failed=outcome.failed,
                           unknown=outcome.unknown, write_calls=outcome.write_calls, dry_run=False,
                           skipped_unchanged=outcome.skipped, prewrite_checks=outcome.prewrite_checks,
                           push_enabled=True,
                           # ids (first 100 per shard) so the report lists what needs a look
                           rejected_records=list(outcome.rejected_ids), failed_records=list(outcome.failed_ids))
    log.info("push %s shard %s: %d records changed, %d pushed, %d rejected (dry run: %s)", ctx.crm,
             ctx.shard, summary["changed_in_shard"], summary["pushed"], summary["rejected"], ctx.dry_run)
    return _record(ctx, "push", summary, shard=ctx.shard)


def _record_diff_overrides(ctx: RunContext, overrides: pd.DataFrame) -> int:
    """Store the new overrides the diff found (someone else's values leadflow leaves alone);
    returns how many it found, standing ones included."""
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
    release(ctx.engine, ctx.crm, ctx.run_id)
    _sla(ctx)
    summary = repo.refresh_run_summary(ctx.engine, ctx.crm, ctx.run_id)
    if status is None:
        status = "warning" if summary.get("warning") else "success"
    repo.finish_run(ctx.engine, ctx.crm, ctx.run_id, status)
    out = run_summary(ctx.crm, ctx.run_id, summary)
    out["status"] = status
    _write_report(ctx)
    return out


def _sla(ctx: RunContext) -> None:
    """The SLA as of this run (`leadflow.verdicts.sla`) into the run's summary, with `sla_alert`
    when more sales-ready leads sit ignored than `handoff.alert_ignored_over`: the run's one alert
    says so once the run has ended (`leadflow.alerts`), together with any other reason. Measuring
    must not keep the run from closing: a failure is logged and becomes the run's warning."""
    summary: dict[str, Any] = {}
    try:
        figures = sla_figures(ctx.engine, ctx.crm, ctx.now_ms, run_id=ctx.run_id)
        summary["sla"] = figures
        alert = ignored_alert(figures, rules_for_run(ctx.engine, ctx.crm, ctx.model_path).model.handoff.alert_ignored_over)
    except Exception:
        log.exception("SLA figures for %s run %s not measured", ctx.crm, ctx.run_id)
        summary["warning"] = "SLA figures not measured (see the report task's log)"
        alert = None
    if alert is not None:
        summary["sla_alert"] = alert
        log.warning("SLA of %s run %s: %s", ctx.crm, ctx.run_id, alert)
    _record(ctx, "sla", summary)


def _write_report(ctx: RunContext) -> None:
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


# --- a whole run --------------------------------------------------------------------------------
STEPS = ("extract", "enrich", "validate", "validate_gate", "qualify", "accounts", "validate_scores", "plan_push",
         "push", "push_accounts")


def run_all(ctx: RunContext, on_step: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole pipeline in-process, unsharded (the CLI's `leadflow run`); `on_step(name,
    summary)` is called as each step ends (the CLI prints a line per step). As the CRM DAG's
    teardown does for an Airflow run: a step's error is recorded on the run, the run closed
    `failed`, and the run's one alert (failed, rejected share, API budget, ignored handoffs) sent
    once it has ended."""
    steps = {"extract": extract, "enrich": enrich, "validate": validate, "validate_gate": validate_gate,
             "qualify": qualify, "accounts": accounts,
             "validate_scores": validate_scores, "plan_push": plan_push, "push": push,
             "push_accounts": push_accounts}
    name = STEPS[0]
    ctx.one_process = ctx.shard is None
    ctx._kept_reads.clear()
    _look_up_connection(ctx)
    warming = _warm_up(ctx)
    try:
        for name in STEPS:
            out = steps[name](ctx)
            if on_step is not None:
                on_step(name, out)
        name = "report"
        out = report(ctx)
    except Exception as exc:
        try:
            record_failure(ctx.engine, ctx.crm, ctx.run_id, name, exc)
            fail_run(ctx.engine, ctx.crm, ctx.run_id)
        except Exception as not_recorded:  # the alert goes out all the same, and the step's error is raised
            log.warning("the failure of run %s was not recorded: %s", ctx.run_id, alerts.error_text(not_recorded))
        _alert(ctx, "failed", {name: "failed"})
        raise
    finally:
        ctx._kept_reads.clear()  # a step that failed before qualify leaves them
        warming.join()
    _alert(ctx, out["status"])
    return out


def _look_up_connection(ctx: RunContext) -> None:
    """The CRM's connection, looked up once for the run's steps before the warm-up thread starts:
    the lookup imports Airflow, whose import points the process's logging at stdout for a moment
    (`airflow_adapter`), and a line the warm-up logs then would land in `leadflow run`'s output.
    A lookup that fails is left to extract, which looks it up again and fails the run with the
    error."""
    if ctx.connection is not None:
        return
    try:
        ctx.connection = get_connection(ctx.conn_id)
    except Exception:
        log.debug("connection %s not found before the run; extract says why", ctx.conn_id, exc_info=True)


def _warm_up(ctx: RunContext) -> threading.Thread:
    """Do, on a thread of its own while the pull waits on the CRM's rate limit, the one-off work
    of the steps after it, which they would otherwise do first: parse the enrichment reference
    file (enrich; kept per process) and build the Great Expectations context (validate; seconds
    of imports, `quality.gx_runtime`). A failure is left for the step that needs the piece to
    raise. Not Airflow's imports: the main thread imports it at once for the CRM's connection,
    and two threads importing Airflow at the same time saw a half-initialised module."""
    enrichment = ctx.settings.enrichment
    pieces: list[tuple[str, Callable[[], Any]]] = [
        ("the enrichment reference file", lambda: load_reference(enrichment.reference_path)),
        ("Great Expectations", get_runtime),
    ]
    if not enrichment.reference_enabled:
        pieces.pop(0)

    def build() -> None:
        for name, piece in pieces:
            try:
                piece()
            except Exception:
                log.debug("warming up %s failed; the step that needs it will say why", name, exc_info=True)

    thread = threading.Thread(target=build, name="leadflow-warm-up")
    thread.start()
    return thread


def _alert(ctx: RunContext, status: str, unfinished: dict[str, str] | None = None) -> None:
    """The run's one alert, if it calls for one (`unfinished`: the step that failed)."""
    try:
        summary = repo.get_run_summary(ctx.engine, ctx.crm, ctx.run_id)
        max_share = ctx.settings.alerts.max_rejected_share
    except Exception as exc:
        summary = {"errors": [f"the run could not be read from the warehouse: {alerts.error_text(exc)}"]}
        max_share = 1.0
    alerts.alert_run(ctx.crm, None, ctx.run_id, summary, status=status, unfinished=unfinished,
                     max_rejected_share=max_share)


def fail_run(engine: Engine, crm: str, run_id: str) -> None:
    """Close a run that stopped on an error: its summary so far, status `failed` (so `leadflow
    report`, the Leadflow page and the run report show a failure, not a run still going)."""
    repo.refresh_run_summary(engine, crm, run_id)
    repo.finish_run(engine, crm, run_id, "failed")


FAILURE_STEP = "failure"  # the run step under which a failed task's error is stored


def record_failure(engine: Engine, crm: str, run_id: str, task: str, exc: BaseException | None,
                   shard: int | None = None) -> None:
    """The failed task (step) and its error, without values, into the run's summary, where the
    run's alert and `leadflow report` find them; a stop for the CRM's daily API budget is marked."""
    failure: dict[str, Any] = {"failed_tasks": [task],
                               "errors": [f"{task}: {alerts.error_text(exc) or 'no error recorded'}"]}
    if _budget_stop(exc):
        failure["budget_stopped"] = True
    repo.record_step(engine, crm, run_id, FAILURE_STEP, failure, shard=shard)


def _budget_stop(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, CrmBudgetExhausted):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def train(ctx: RunContext) -> dict[str, Any]:
    """Retrain the predictive model from the warehouse's won/lost history (champion/challenger)."""
    # Imported here: it loads scikit-learn (about 1.3 s), which no step of a run needs.
    from leadflow.predict.warehouse import train_from_warehouse

    return train_from_warehouse(ctx.engine, ctx.crm, now_ms=ctx.now_ms)


def default_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
