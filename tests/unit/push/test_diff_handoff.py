"""The handoff fields in the diff: leadflow's own `sales_ready` flag, since and reason are written
when the handoff starts, stays put while it lasts and is cleared when it ends; the optional
"new for sales" status is a shared field under the ownership rule."""

from __future__ import annotations

import pandas as pd

from leadflow.push.diff import compute_changes, diff_leads

SINCE_MS = 1_748_736_000_000  # 2025-06-01T00:00:00Z
SINCE_TEXT = "2025-06-01T00:00:00.000Z"
REASON = "score 82 >= 70; BANT 4 of 4 (budget, authority, need, timeline); persona executive"


def _desired(**over) -> pd.DataFrame:
    row = {"record_id": "1", "model_version": "v1", "score": 82.0, "fit_score": 90.0,
           "engagement_score": 60.0, "grade": "A2", "bant_count": 4.0, "reasons": "+82 fit",
           "disqualification_reason": None, "stage": "mql", "lead_status": "open", "scored_at": 1000,
           "sales_ready": True, "sales_ready_since": float(SINCE_MS), "sales_ready_reason": REASON}
    row.update(over)
    return pd.DataFrame([row])


def _current(**over) -> pd.DataFrame:
    row = {"record_id": "1", "lifecycle_stage": "mql", "lead_status": "open", "crm_score": "82",
           "crm_fit_score": "90", "crm_engagement_score": "60", "crm_grade": "A2", "crm_bant_count": "4",
           "crm_reasons": "+82 fit", "crm_disqualification_reason": None, "crm_model_version": "v1",
           "crm_scored_at": "999", "crm_sales_ready": "true", "crm_sales_ready_since": SINCE_TEXT,
           "crm_sales_ready_reason": REASON}
    row.update(over)
    return pd.DataFrame([row])


def _after(changes: pd.DataFrame) -> dict[str, str | None]:
    return dict(zip(changes["field"], changes["after"]))


def test_given_a_lead_found_sales_ready_then_flag_since_and_reason_are_written_as_the_crm_shows_them():
    current = _current(crm_sales_ready=None, crm_sales_ready_since=None, crm_sales_ready_reason=None)
    after = _after(compute_changes(_desired(), current))
    assert after["sales_ready"] == "true"
    assert after["sales_ready_since"] == SINCE_TEXT
    assert after["sales_ready_reason"] == REASON
    assert "lifecycle_stage" not in after  # handed over, still MQL


def test_given_a_lead_still_sales_ready_then_nothing_is_written():
    assert compute_changes(_desired(), _current()).empty


def test_given_a_lead_that_is_not_sales_ready_and_an_empty_flag_then_nothing_is_written():
    # Turning the handoff on must not write "false" to every lead of the CRM.
    desired = _desired(sales_ready=False, sales_ready_since=None, sales_ready_reason=None)
    current = _current(crm_sales_ready=None, crm_sales_ready_since=None, crm_sales_ready_reason=None)
    assert compute_changes(desired, current).empty


def test_given_a_lead_no_longer_sales_ready_then_the_flag_is_false_and_since_and_reason_are_cleared():
    desired = _desired(sales_ready=False, sales_ready_since=None, sales_ready_reason=None)
    after = _after(compute_changes(desired, _current()))
    assert after["sales_ready"] == "false"
    assert after["sales_ready_since"] is None and after["sales_ready_reason"] is None


def test_given_a_small_score_move_then_the_reason_quoting_it_is_not_rewritten_alone():
    desired = _desired(score=83.0, sales_ready_reason=REASON.replace("82", "83"))
    assert compute_changes(desired, _current()).empty


def test_given_score_rows_from_before_the_handoff_then_no_handoff_field_is_written():
    desired = _desired().drop(columns=["sales_ready", "sales_ready_since", "sales_ready_reason"])
    current = _current(crm_sales_ready=None, crm_sales_ready_since=None, crm_sales_ready_reason=None)
    assert compute_changes(desired, current).empty


def test_given_a_new_for_sales_status_and_a_reps_status_then_the_rep_keeps_it():
    # lead_status.sales_ready = new: a shared field, so the ownership rule applies.
    diff = diff_leads(_desired(lead_status="new"), _current(lead_status="connected"),
                      last_written={("1", "lead_status"): "open"})
    assert "lead_status" not in set(diff.changes["field"])
    assert diff.overrides["wanted"].tolist() == ["new"]


def test_given_a_new_for_sales_status_over_leadflows_own_status_then_it_is_written():
    changes = compute_changes(_desired(lead_status="new"), _current(lead_status="open"),
                              last_written={("1", "lead_status"): "open"})
    assert _after(changes)["lead_status"] == "new"
