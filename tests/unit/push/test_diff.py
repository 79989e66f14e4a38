"""The diff decides what leadflow writes: only real changes, stages forward, other people's values
left to them (overrides), values only the CRM's history can settle marked for the pre-write read."""

from __future__ import annotations

import pandas as pd

from leadflow.push.diff import DiffSettings, compute_changes, diff_leads


def _desired(**over) -> pd.DataFrame:
    row = {"record_id": "1", "model_version": "v1", "score": 60.0, "fit_score": 70.0,
           "engagement_score": 40.0, "grade": "B2", "bant_count": 3.0, "reasons": "+60 fit",
           "disqualification_reason": None, "stage": "mql", "lead_status": "open", "scored_at": 1000}
    row.update(over)
    return pd.DataFrame([row])


def _current(**over) -> pd.DataFrame:
    row = {"record_id": "1", "lifecycle_stage": "mql", "lead_status": "open", "crm_score": "60",
           "crm_fit_score": "70", "crm_engagement_score": "40", "crm_grade": "B2", "crm_bant_count": "3",
           "crm_reasons": "+60 fit", "crm_disqualification_reason": None, "crm_model_version": "v1",
           "crm_scored_at": "999"}
    row.update(over)
    return pd.DataFrame([row])


def _fields(changes: pd.DataFrame) -> set[str]:
    return set(changes["field"])


def test_given_crm_already_holds_desired_values_then_nothing_is_written():
    assert compute_changes(_desired(), _current()).empty


def test_given_first_run_then_every_owned_field_and_stage_is_written():
    current = _current(lifecycle_stage="lead", crm_score=None, crm_fit_score=None,
                       crm_engagement_score=None, crm_grade=None, crm_bant_count=None,
                       crm_reasons=None, crm_model_version=None, crm_scored_at=None)
    fields = _fields(compute_changes(_desired(), current))
    assert {"score", "fit_score", "engagement_score", "grade", "bant_count", "reasons",
            "model_version", "scored_at", "lifecycle_stage"} <= fields


def test_given_small_score_move_without_grade_or_stage_change_then_it_is_ignored():
    assert compute_changes(_desired(score=61.0), _current(), DiffSettings(min_score_delta=2)).empty


def test_given_small_score_move_with_grade_change_then_score_and_grade_are_written():
    fields = _fields(compute_changes(_desired(score=61.0, grade="A2"), _current()))
    assert {"score", "grade", "scored_at", "model_version"} <= fields


def test_given_large_score_move_then_score_reasons_and_passengers_are_written():
    changes = compute_changes(_desired(score=75.0, reasons="+75 fit"), _current())
    assert {"score", "reasons", "scored_at"} <= _fields(changes)
    row = changes[changes["field"] == "score"].iloc[0]
    assert (row["before"], row["after"]) == ("60", "75")


def test_given_desired_stage_behind_current_then_stage_is_not_moved_backwards():
    assert "lifecycle_stage" not in _fields(compute_changes(_desired(stage="lead"), _current(lifecycle_stage="sql")))


def test_given_sales_owned_stage_then_stage_is_never_touched():
    changes = compute_changes(_desired(stage="sql"), _current(lifecycle_stage="opportunity"))
    assert "lifecycle_stage" not in _fields(changes)


def _row(changes: pd.DataFrame, field: str) -> dict:
    return changes[changes["field"] == field].iloc[0].to_dict()


def test_given_status_someone_changed_after_leadflow_wrote_it_then_it_is_an_override():
    # leadflow opened the lead; a rep rejected it. The next run must not set it back to open.
    diff = diff_leads(_desired(lead_status="open"), _current(lead_status="unqualified"),
                      last_written={("1", "lead_status"): "open"})
    assert "lead_status" not in _fields(diff.changes)
    assert diff.overrides.to_dict("records") == [
        {"record_id": "1", "field": "lead_status", "current": "unqualified", "wanted": "open", "last_written": "open",
         "standing": False}]


def test_given_status_still_what_leadflow_wrote_then_it_is_updated_without_a_history_check():
    diff = diff_leads(_desired(lead_status="unqualified"), _current(lead_status="open"),
                      last_written={("1", "lead_status"): "open"})
    assert not _row(diff.changes, "lead_status")["verify"]
    assert diff.overrides.empty


def test_given_status_leadflow_never_wrote_then_it_is_a_candidate_for_the_history_check():
    # A status nobody at leadflow wrote may be the portal's default or a rep's decision: only the
    # CRM's history can tell, so the writer reads it right before the write.
    diff = diff_leads(_desired(lead_status="nurture"), _current(lead_status="connected"))
    assert bool(_row(diff.changes, "lead_status")["verify"]) is True
    assert diff.overrides.empty


def test_given_an_override_still_standing_then_it_is_not_read_again():
    diff = diff_leads(_desired(lead_status="nurture"), _current(lead_status="in_progress"),
                      standing={("1", "lead_status"): "in_progress"})
    assert "lead_status" not in _fields(diff.changes)
    assert list(diff.overrides["current"]) == ["in_progress"] and list(diff.overrides["standing"]) == [True]


def test_given_a_value_outside_the_mapping_then_it_is_left_and_never_treated_as_empty():
    current = _current(lead_status=None, crm_raw_lead_status="PARTNER_REFERRAL",
                       lifecycle_stage=None, crm_raw_lifecycle_stage="1234567")
    diff = diff_leads(_desired(lead_status="open", stage="mql"), current)
    assert not {"lead_status", "lifecycle_stage"} & _fields(diff.changes)
    assert sorted(diff.overrides["current"]) == ["1234567", "PARTNER_REFERRAL"]


def test_given_an_empty_shared_field_then_it_is_written():
    diff = diff_leads(_desired(lead_status="open"), _current(lead_status=None))
    assert not _row(diff.changes, "lead_status")["verify"]


def test_given_stage_a_person_moved_back_then_the_same_evidence_does_not_promote_it_again():
    diff = diff_leads(_desired(stage="mql"), _current(lifecycle_stage="lead"),
                      last_written={("1", "lifecycle_stage"): "mql"})
    assert "lifecycle_stage" not in _fields(diff.changes)
    assert list(diff.overrides["field"]) == ["lifecycle_stage"]


def test_given_only_scored_at_differs_then_nothing_is_written():
    assert compute_changes(_desired(scored_at=5000), _current()).empty
