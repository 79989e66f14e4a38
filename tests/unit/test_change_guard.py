"""The guard against a bad model: a run that would rewrite too many records stops before writing,
unless it is the CRM's first push or the run is forced."""

from __future__ import annotations

import pandas as pd
import pytest

from leadflow.pipeline import ChangeGuardError, RunContext, plan_push
from leadflow.warehouse import repo


def _setup(engine, changed: int, total: int = 10, finished_push: bool = True) -> None:
    rows = [{"record_id": str(i), "lifecycle_stage": "lead", "lead_status": "open", "crm_score": "10",
             "crm_grade": "C3", "crm_reasons": "+10 x", "crm_model_version": "v1", "crm_fit_score": "10",
             "crm_engagement_score": "10", "crm_bant_count": "1"} for i in range(total)]
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", rows, [], [])
    scores = pd.DataFrame({
        "crm": "hubspot", "record_id": [str(i) for i in range(total)], "model_version": "v1",
        "score": [90.0 if i < changed else 10.0 for i in range(total)], "fit_score": 10.0,
        "engagement_score": 10.0, "grade": "C3", "bant_budget": False, "bant_authority": False,
        "bant_need": False, "bant_timeline": True, "bant_count": 1.0, "disqualification_reason": None,
        "stage": "lead", "lead_status": "open", "reasons": "+10 x",
        "sales_ready": False, "sales_ready_since": None, "sales_ready_reason": None,
    })
    repo.save_scores(engine, "hubspot", "scoring", scores)
    if finished_push:
        repo.start_run(engine, "hubspot", "earlier", dry_run=False)
        repo.record_step(engine, "hubspot", "earlier", "push", {"pushed": total})
        repo.finish_run(engine, "hubspot", "earlier", "success")
    repo.start_run(engine, "hubspot", "now", dry_run=False)


def _ctx(engine, **kw) -> RunContext:
    ctx = RunContext(crm="hubspot", run_id="now", **kw)
    ctx._engine = engine
    return ctx


def test_given_most_records_would_change_then_plan_push_stops_and_asks_for_force(sqlite_warehouse):
    _setup(sqlite_warehouse, changed=8)
    with pytest.raises(ChangeGuardError, match="force=true"):
        plan_push(_ctx(sqlite_warehouse))
    assert repo.get_run_summary(sqlite_warehouse, "hubspot", "now")["change_guard"] == "tripped"


def test_given_force_or_first_push_or_dry_run_then_guard_lets_it_through(sqlite_warehouse, tmp_path):
    _setup(sqlite_warehouse, changed=8)
    assert plan_push(_ctx(sqlite_warehouse, force=True))["changed"] == 8
    assert plan_push(_ctx(sqlite_warehouse, dry_run=True))["changed"] == 8


def test_given_no_finished_push_yet_then_first_push_is_exempt(sqlite_warehouse):
    _setup(sqlite_warehouse, changed=10, finished_push=False)
    assert plan_push(_ctx(sqlite_warehouse))["change_guard"] == "first push"


def test_given_few_changes_then_guard_is_ok(sqlite_warehouse):
    _setup(sqlite_warehouse, changed=2)
    assert plan_push(_ctx(sqlite_warehouse))["change_guard"] == "ok"
